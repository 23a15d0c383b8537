"""Training throughput of both adaptation stages, as a share of the machine's fp32 matmul rate.

Each stage runs in a fresh subprocess (so its peak RSS is its own) on Cranfield text with the defaults of
`llara-rag adapt`: EBAE/EBAR on 8 windows of 128 tokens a step; the contrastive stage on 64 inverse-cloze
pairs a step through the gradient cache. A step is the loss, its backward and an optimizer step; the first
is a warm-up and is not timed. Tokens are the real (unpadded) tokens of the step's sequences, prompts
included; useful FLOPs are 4 x non-embedding parameters a token (forward 2, backward to the inputs 2: the
frozen weights get no gradient), so the contrastive stage's extra no-graph forward pass counts as cost.
Each stage runs eager, with ``--compile`` (its decoder layers compiled, from an empty compiler cache:
the warm-up step then includes the compilation, reported apart), with ``--bf16`` (CPU autocast, as the
Trainer runs it: products in bf16, weights and optimizer in fp32), and once more on the frozen backbone
without any adapter (gradients to the input embeddings only): the same batches, padding and LM head with
nothing to train, so its share is the ceiling any adapter's step could reach on this machine.

    python benchmarks/train_speed.py [--steps 3] [--setups "adapter,adapter bf16"]

``--setups`` runs some rows again and keeps the others of the last run with as many steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from encode_speed import in_subprocess, matmul_gflops, non_embedding_parameters

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CORPUS = ROOT.parent / "shared" / "data" / "cranfield"


def _arguments(stage: str):
    from llara_rag.training import AdaptationArguments

    return AdaptationArguments(output_dir="/tmp/llara-train-speed", stages=stage, disable_tqdm=True)


def timed_steps(
    loss_of: Callable[[dict], torch.Tensor], optimizer: torch.optim.Optimizer | None, batches: list
) -> dict[str, float]:
    """Seconds of the warm-up step on ``batches[0]`` and of the optimizer steps on ``batches[1:]``, and the
    fp32 matmul rate just before and after those: on a shared host it moves by a fifth within minutes."""

    def step(batch: dict) -> None:
        loss_of(batch).backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step(batches[0])
    warm_up = time.perf_counter() - start
    before = matmul_gflops()
    start = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    seconds = time.perf_counter() - start
    return {"warm_up_seconds": warm_up, "seconds": seconds, "matmul_gflops": [before, matmul_gflops()]}


SETUPS = ("adapter", "adapter compiled", "adapter bf16", "frozen backbone")
"""What a stage trains: LoRA and the special-token rows as `adapt` does, with --compile or --bf16, or
nothing."""


def prepared(backbone, args, setup: str) -> tuple[torch.nn.Module, torch.optim.Optimizer | None]:
    """The model a step runs for ``setup`` and its optimizer (None when nothing trains)."""
    from llara_rag.training.trainer import compile_layers, lora_model

    if setup == "frozen backbone":
        model = backbone.network.train().requires_grad_(False)
        model.enable_input_require_grads()  # so the backward pass still runs through every layer
        return model, None
    model = lora_model(backbone, args)
    if setup == "adapter compiled":
        compile_layers(model)
    parameters = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(parameters, lr=args.learning_rate)


def _stage_one_steps(steps: int, setup: str) -> dict:
    from functools import partial

    from llara_rag.encoding.backbone import load_backbone
    from llara_rag.training.data.corpus import build_records
    from llara_rag.training.losses.llara import ExampleBuilder, collate_examples, compute_objective

    args = _arguments("ebae-ebar")
    backbone = load_backbone(args.model, device="cpu")
    params = non_embedding_parameters(backbone.network)  # the backbone's own, before any LoRA
    records, _ = build_records(CORPUS, backbone.tokenizer, args.window_tokens)
    builder = ExampleBuilder(backbone.tokenizer, backbone.special_ids, max_text_tokens=args.window_tokens)
    model, optimizer = prepared(backbone, args, setup)
    size = args.per_device_train_batch_size
    collate = partial(collate_examples, pad_id=backbone.tokenizer.eos_token_id)
    batches = [collate([builder(r) for r in records[i * size : (i + 1) * size]]) for i in range(steps + 1)]

    timing = timed_steps(
        lambda batch: compute_objective(model, batch, args.objective).loss, optimizer, batches
    )
    tokens = sum(
        len(e.input_ids)
        for b in range(1, steps + 1)
        for e in map(builder, records[b * size : (b + 1) * size])
    )
    return {
        **timing,
        "tokens": tokens,
        "positions": sum(b["input_ids"].numel() for b in batches[1:]),
        "rows_per_step": size,
        "params": params,
    }


def _contrastive_steps(steps: int, setup: str) -> dict:
    from llara_rag.encoding.backbone import load_backbone
    from llara_rag.encoding.encoder import PromptInputs
    from llara_rag.training.data.groups import GroupCollator
    from llara_rag.training.data.pseudo_pairs import make_pairs
    from llara_rag.training.losses.info_nce import CachedInfoNCE, chunks

    args = _arguments("contrastive")
    cargs = args.contrastive(None)
    backbone = load_backbone(args.model, device="cpu")
    params = non_embedding_parameters(backbone.network)  # the backbone's own, before any LoRA
    samples, _, _ = make_pairs(CORPUS, backbone.tokenizer, args.pairs)
    model, optimizer = prepared(backbone, cargs, setup)
    loss = CachedInfoNCE(cargs.loss, group_size=1)
    size = cargs.per_device_train_batch_size
    collator = GroupCollator(
        PromptInputs(backbone.tokenizer, backbone.special_ids),
        cargs.query_max_length,
        cargs.passage_max_length,
    )
    batches = [collator(samples[i * size : (i + 1) * size]) for i in range(steps + 1)]

    timing = timed_steps(lambda batch: loss(model, batch).loss, optimizer, batches)
    tokens = sum(
        int(b["query_attention_mask"].sum() + b["passage_attention_mask"].sum()) for b in batches[1:]
    )
    positions = sum(  # padded as the gradient cache's chunks are: each to its longest row
        part["input_ids"].numel()
        for b in batches[1:]
        for side in ("query", "passage")
        for _, part in chunks(
            {"input_ids": b[f"{side}_input_ids"], "attention_mask": b[f"{side}_attention_mask"]},
            cargs.chunk_tokens,
        )
    )
    return {
        **timing,
        "tokens": tokens,
        "positions": positions,
        "rows_per_step": size,
        "chunk_tokens": cargs.chunk_tokens,
        "params": params,
    }


STAGES = {"ebae-ebar": _stage_one_steps, "contrastive": _contrastive_steps}


def _child(stage: str, steps: int, setup: str) -> dict:
    import os
    import tempfile

    from llara_rag.training.trainer import flushed_denormals

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="llara-inductor-")  # a cold compile
    torch.manual_seed(0)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16, enabled=setup == "adapter bf16")
    with flushed_denormals(), bf16:  # as every training stage runs
        return {"stage": stage, "setup": setup, **STAGES[stage](steps, setup)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps a stage (after one warm-up)")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    args = parser.parse_args()
    setups = args.setups.split(",")
    earlier = RESULTS / "train_speed.json"
    kept = json.loads(earlier.read_text())["stages"] if earlier.is_file() else {}
    if kept and json.loads(earlier.read_text())["steps"] != args.steps:
        kept = {}
    stages = {
        f"{stage} {setup}": kept[f"{stage} {setup}"]
        if setup not in setups and f"{stage} {setup}" in kept
        else in_subprocess(_child, stage, args.steps, setup)
        for stage in STAGES
        for setup in SETUPS
    }
    for result in stages.values():
        result["tokens_per_s"] = result["tokens"] / result["seconds"]
        result["seconds_per_step"] = result["seconds"] / args.steps
        result["achieved_gflops"] = 4 * result["params"] * result["tokens_per_s"] / 1e9
        result["fraction_of_matmul"] = result["achieved_gflops"] / statistics.mean(result["matmul_gflops"])
        result["padding"] = 1 - result["tokens"] / result["positions"]
    summary = {
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "stages": stages,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(summary, indent=2) + "\n")
    header = (
        "| stage | trains | rows a step | padding | first step (s) | s a step | tokens/s "
        "| GFLOP/s (4 x params) | matmul GFLOP/s | share of matmul | peak RSS (MB) |"
    )
    lines = [
        f"# Training speed: SmolLM2-135M + LoRA r16, {summary['threads']} threads, Cranfield text",
        "",
        header,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in stages.values():
        lines.append(
            f"| {result['stage']} | {result['setup']} | {result['rows_per_step']} | "
            f"{100 * result['padding']:.0f} % | {result['warm_up_seconds']:.0f} | "
            f"{result['seconds_per_step']:.1f} | {result['tokens_per_s']:.0f} | "
            f"{result['achieved_gflops']:.1f} | {statistics.mean(result['matmul_gflops']):.0f} | "
            f"{100 * result['fraction_of_matmul']:.0f} % | "
            f"{result['peak_rss_mb']:.0f} |"
        )
    footer = (
        f"Matmul: an fp32 2048² product ({summary['cpu_capability']}; in bf16 rows autocast runs it in bf16), "
        "the mean of its rate just before and just after the row's timed steps. "
        "The first step is a warm-up, not timed; compiled, it includes the compilation from an empty cache. "
        "Padding: positions of the step's padded batches (chunks, for the contrastive stage) that are not "
        "tokens. The frozen backbone trains nothing: the ceiling of an adapter's step. "
        "`python benchmarks/train_speed.py`."
    )
    lines += ["", footer, ""]
    (RESULTS / "train_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
