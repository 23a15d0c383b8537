"""Encoding speed of LLaRAEncoder against the published reference procedure, on the same backbone.

The reference (FlagEmbedding research/LLARA README) is written out plainly below: AutoModel forward with
all hidden states, left padding to a multiple of 8, no length sorting, ``[:, -8:]`` pooling. Both run on
the same scifact passages in fresh subprocesses (so peak memory is each one's own), and a large fp32
matmul measured in the same run gives the machine's attainable rate for the efficiency figure.

    python benchmarks/reference_speed.py [--passages 512] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from encode_speed import RESULTS, in_subprocess, load_passages, matmul_gflops, non_embedding_parameters


def run_llara(passages: list[str], batch_size: int) -> dict:
    from llara_rag.encoding.encoder import LLaRAEncoder

    encoder = LLaRAEncoder(batch_size=batch_size)
    tokens = sum(len(ids) for ids in encoder.build_inputs(passages, "passage"))
    start = time.perf_counter()
    vectors = encoder.encode_passages(passages, show_progress=False)
    seconds = time.perf_counter() - start
    params = non_embedding_parameters(encoder.backbone.network.base_model)
    return {"seconds": seconds, "real_tokens": tokens, "params": params, "vectors": vectors}


def run_reference(passages: list[str], batch_size: int) -> dict:
    """The reference procedure, on the same backbone and special tokens as the encoder."""
    from llara_rag.encoding.backbone import load_backbone
    from llara_rag.encoding.prompts import DEFAULT_PROMPTS

    backbone = load_backbone("smollm2")
    tokenizer, model = backbone.tokenizer, backbone.network.base_model
    tokenizer.padding_side = "left"
    special = tokenizer.convert_ids_to_tokens(list(backbone.special_ids.summarize))
    prefix_ids = [tokenizer.bos_token_id] + tokenizer('"', add_special_tokens=False)["input_ids"]
    suffix_ids = tokenizer(DEFAULT_PROMPTS.passage_suffix + "".join(special), add_special_tokens=False)[
        "input_ids"
    ]
    start = time.perf_counter()
    outputs = []
    with torch.no_grad():
        for begin in range(0, len(passages), batch_size):
            features = []
            for passage in passages[begin : begin + batch_size]:
                ids = tokenizer(passage, max_length=512, truncation=True, add_special_tokens=False)[
                    "input_ids"
                ]
                ids = prefix_ids + ids + suffix_ids
                features.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
            batch = tokenizer.pad(features, padding=True, pad_to_multiple_of=8, return_tensors="pt")
            hidden = model(**batch, return_dict=True, output_hidden_states=True).hidden_states[-1]
            embedding = torch.nn.functional.normalize(hidden[:, -8:, :].mean(dim=1), dim=-1)
            outputs.append(embedding.float().numpy())
    return {"seconds": time.perf_counter() - start, "vectors": np.concatenate(outputs)}


def _child(name: str, passages: list[str], batch_size: int) -> dict:
    torch.manual_seed(0)
    return (run_llara if name == "llara" else run_reference)(passages, batch_size)






def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    passages = load_passages(args.passages)
    rate_before = matmul_gflops()
    llara = in_subprocess(_child, "llara", passages, args.batch_size)
    reference = in_subprocess(_child, "reference", passages, args.batch_size)
    rate_after = matmul_gflops()
    matmul = (rate_before + rate_after) / 2
    cosine = np.sum(llara["vectors"] * reference["vectors"], axis=1)
    achieved = 2 * llara["params"] * llara["real_tokens"] / llara["seconds"] / 1e9
    result = {
        "passages": len(passages),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "real_tokens": llara["real_tokens"],
        "llara_passages_per_s": len(passages) / llara["seconds"],
        "reference_passages_per_s": len(passages) / reference["seconds"],
        "speedup": reference["seconds"] / llara["seconds"],
        "llara_peak_rss_mb": llara["peak_rss_mb"],
        "reference_peak_rss_mb": reference["peak_rss_mb"],
        "min_cosine_vs_reference": float(cosine.min()),
        "achieved_gflops": achieved,
        "matmul_gflops": matmul,
        "matmul_gflops_before_after": [rate_before, rate_after],
        "fraction_of_matmul": achieved / matmul,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reference_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    table = [
        (
            f"# Encoding speed: {len(passages)} scifact passages, SmolLM2-135M, fp32, "
            f"{result['threads']} threads, batch {args.batch_size}"
        ),
        "",
        "| procedure | passages/s | peak RSS (MB) |",
        "|---|---|---|",
        f"| LLaRAEncoder | {result['llara_passages_per_s']:.2f} | {result['llara_peak_rss_mb']:.0f} |",
        (
            f"| reference (README procedure) | {result['reference_passages_per_s']:.2f} | "
            f"{result['reference_peak_rss_mb']:.0f} |"
        ),
        "",
        f"- speed-up: **{result['speedup']:.2f}x**; min cosine between the two: {result['min_cosine_vs_reference']:.6f}",
        (
            f"- LLaRAEncoder: {achieved:.1f} GFLOP/s on real tokens (2 x {llara['params'] / 1e6:.1f} M "
            f"non-embedding params x {llara['real_tokens']} tokens) = "
            f"**{100 * result['fraction_of_matmul']:.0f} %** of a 2048² fp32 matmul ({matmul:.1f} GFLOP/s, "
            "mean of before/after)"
        ),
    ]
    (RESULTS / "reference_speed.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
