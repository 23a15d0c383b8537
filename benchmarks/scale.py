"""Encoding throughput on one device against several: the 135M default here, a 7B-shaped model on a GPU.

Rows, each encoding the same SciFact passages in a fresh subprocess (so peak memory is its own):
- ``smollm2`` on one CPU process, then on ``--workers`` CPU worker processes (``EncoderConfig.devices``);
  with 2 cores, two workers share them: expect no gain here, the pool is for machines with several GPUs;
- with ``--gpu`` (CUDA present): ``smollm2`` in bf16 on one GPU, and a LLaMA-2-7B-shaped model with random
  weights (saved once under ``--workdir``; the speed of a 7B does not depend on its weights) in bf16 and
  in 4-bit NF4 through the encoder's own ``quantization`` option.

    python benchmarks/scale.py [--passages 128] [--workers 2] [--gpu] [--workdir DIR]

Writes benchmarks/results/scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from encode_speed import in_subprocess, load_passages

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LLAMA_7B_SHAPE = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
}


def run(passages: list[str], fields: dict) -> dict:
    """Passages a second of an encoder built from ``fields``, after a warm-up call."""
    from llara_rag.encoding.encoder import LLaRAEncoder

    encoder = LLaRAEncoder(**fields)
    # Longer than a batch, so a pool's workers start (and load their models) before the clock does.
    encoder.encode_passages(passages[: 4 * encoder.config.batch_size], show_progress=False)
    tokens = sum(len(ids) for ids in encoder.build_inputs(passages, "passage"))
    start = time.perf_counter()
    encoder.encode_passages(passages, show_progress=False)
    seconds = time.perf_counter() - start
    if encoder.config.devices:
        encoder.pool().close()
    return {"passages_per_s": len(passages) / seconds, "tokens_per_s": tokens / seconds}


def random_7b(workdir: Path) -> Path:
    """A LLaMA-2-7B-shaped checkpoint with random bf16 weights and SmolLM2's tokenizer, saved once."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llara_rag.encoding.backbone import materialize, resolve_backbone

    path = workdir / "random-llama-7b-shape"
    if (path / "config.json").exists():
        return path
    tokenizer = AutoTokenizer.from_pretrained(materialize(resolve_backbone("smollm2")))
    config = LlamaConfig(vocab_size=len(tokenizer), **LLAMA_7B_SHAPE)
    torch.set_default_dtype(torch.bfloat16)  # 13 GB of weights made in bf16, not 27 GB in fp32
    try:
        LlamaForCausalLM(config).save_pretrained(path)
    finally:
        torch.set_default_dtype(torch.float32)
    tokenizer.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="add the GPU rows (needs CUDA)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "scale")
    args = parser.parse_args()
    passages = load_passages(args.passages)
    rows = {
        "smollm2, 1 CPU process": {"device": "cpu"},
        f"smollm2, {args.workers} CPU worker processes": {"devices": ("cpu",) * args.workers},
    }
    if args.gpu:
        checkpoint = str(random_7b(args.workdir))
        rows |= {
            "smollm2, 1 GPU, bf16": {"device": "cuda", "dtype": "bfloat16"},
            "7B-shaped (random weights), 1 GPU, bf16": {
                "model": checkpoint,
                "adapter": None,
                "device": "cuda",
            },
            "7B-shaped (random weights), 1 GPU, 4-bit NF4": {
                "model": checkpoint,
                "adapter": None,
                "device": "cuda",
                "quantization": "4bit",
            },
        }
    results = {name: in_subprocess(run, passages, fields) for name, fields in rows.items()}
    record = {
        "passages": len(passages),
        "machine": platform.processor() or platform.machine(),
        "rows": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(record, indent=2) + "\n")
    first = next(iter(results.values()))["passages_per_s"]
    table = [
        f"# Encoding on one device and on several: {len(passages)} SciFact passages",
        "",
        "| encoder | passages/s | tokens/s | vs 1 CPU process | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {row['passages_per_s']:.2f} | {row['tokens_per_s']:.0f} | "
            f"{row['passages_per_s'] / first:.2f}x | {row['peak_rss_mb']:.0f} |"
            for name, row in results.items()
        ),
        "",
        (
            f"`python benchmarks/scale.py{' --gpu' if args.gpu else ''}` on {record['machine']} "
            f"({os.cpu_count()} cores). Peak RSS is the measuring process's (worker processes not included). "
            "CPU workers split the cores one process already runs its matmuls on, and add the pool's "
            "transfers: on a few cores they are no gain; the pool is for machines with several GPUs."
        ),
        *(() if args.gpu else ("", "GPU rows: `--gpu` on a machine with CUDA (none was lent to this run).")),
    ]
    (RESULTS / "scale.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
