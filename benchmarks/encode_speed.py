"""Encoding speed at each precision the encoder offers, beside all-MiniLM-L6-v2, on the CPU that runs it.

Every variant lives in one process and the rounds alternate them batch by batch on the same SciFact
passages, so a machine shared with other work slows them alike: the ratios to fp32 (medians over rounds)
are the figures to compare, the absolute rates only this run's. Single-query latency alternates the same
way over SciFact queries. Peak RSS is each variant's own, from a fresh process that loads it and encodes
one batch. ``auto`` is the precision ``llara_rag.encoding.precision.AUTO`` picks on this CPU; its figures are those
of the precision picked. ``--cap-isa avx2`` runs the same on a newer CPU held to AVX2 instructions by
the variables PyTorch, its compiler, oneDNN and MKL read (:data:`AVX2_CAPS`): a rough stand-in for an AVX2
host, whose caches, clocks and int8 kernels it does not have (held, int8 ran 1.6x fp32; on an AVX2 host, far
slower than fp32). Results are named for the instructions they ran on: ``encode_speed`` on AVX512 + VNNI,
``encode_speed_avx2`` on an AVX2 host, ``encode_speed_avx2_held`` for a held run. ``benchmarks/reference_speed.py`` compares the encoder with
the published reference procedure, and this module's helpers serve the other speed benchmarks.

    python benchmarks/encode_speed.py [--passages 64] [--rounds 3] [--queries 40] [--batch-size 16]
    python benchmarks/encode_speed.py --cap-isa avx2   # an AVX512 CPU held to AVX2: encode_speed_avx2_held
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
PRECISIONS = ("fp32", "bf16", "int8")
MINILM = "all-MiniLM-L6-v2"
AVX2_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
"""Read when each library starts, so a capped run executes itself again with them set."""


def hold_to_avx2() -> None:
    """Executes this process again held to AVX2 (:data:`AVX2_CAPS`), unless it already is."""
    if all(os.environ.get(name) == value for name, value in AVX2_CAPS.items()):
        return
    # the compiler's on-disk cache does not key its kernels by instruction set: start from an empty one
    fresh = {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="inductor-avx2-")}
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_CAPS, **fresh})


def cpu_model() -> str:
    """The CPU's model name and family, as Linux reports them (hosts of one name differ in instructions)."""
    from llara_rag.encoding.precision import cpu_info

    fields = cpu_info()
    name = fields.get("model name", platform.processor() or platform.machine())
    return (
        f"{name}, family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else name
    )


def avx2_flags(flags: frozenset[str]) -> frozenset[str]:
    """The CPU flags a process held to AVX2 may use: these less every AVX512 and AMX one."""
    return frozenset(flag for flag in flags if not flag.startswith(("avx512", "amx")))


def load_passages(count: int) -> list[str]:
    passages = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            passages.append(f"{record.get('title', '')} {record['text']}".strip())
            if len(passages) == count:
                break
    return passages


def load_queries(count: int) -> list[str]:
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line, _ in zip(handle, range(count))]


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def non_embedding_parameters(model: torch.nn.Module) -> int:
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def peak_rss_mb() -> float:
    """This process's own peak resident memory: Linux's VmHWM, which starts afresh at exec, where
    ``ru_maxrss`` carries over the peak of the process that forked it (a parent with models loaded)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measured(function: Callable[..., dict], queue: multiprocessing.Queue, *args: object) -> None:
    result = function(*args)
    result["peak_rss_mb"] = peak_rss_mb()
    queue.put(result)


def in_subprocess(function: Callable[..., dict], *args: object) -> dict:
    """``function(*args)`` in a fresh spawned process, with that process's peak RSS added to its result."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measured, args=(function, queue, *args))
    process.start()
    result = queue.get()
    process.join()
    return result


Encode = Callable[[list[str]], np.ndarray]


def build(name: str, batch_size: int) -> tuple[Encode, Callable[[str], np.ndarray]]:
    """(encode passages, encode one query) of a variant: a precision of the default encoder, or MiniLM."""
    if name == MINILM:
        from llara_rag.ranking.baselines import load_minilm

        minilm = load_minilm(batch_size=batch_size)
        return (lambda texts: minilm.encode(texts, show_progress=False)), (
            lambda query: minilm.encode([query], show_progress=False)
        )
    from llara_rag.encoding.encoder import LLaRAEncoder

    encoder = LLaRAEncoder(precision=name, batch_size=batch_size)
    return (lambda texts: encoder.encode_passages(texts, show_progress=False)), (
        lambda query: encoder.encode_queries([query], show_progress=False)
    )


def _rss_child(name: str, passages: list[str], batch_size: int) -> dict:
    encode, _ = build(name, batch_size)
    encode(passages[:batch_size])
    return {}


def main() -> None:
    from llara_rag.encoding.encoder import LLaRAEncoder
    from llara_rag.encoding.precision import auto_precision, cpu_flags, instruction_set

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cap-isa", choices=["avx2"], help="run held to AVX2 instructions (AVX2_CAPS)")
    args = parser.parse_args()
    if args.cap_isa:
        hold_to_avx2()
    load = os.getloadavg()[0]  # how busy the machine was at the start: rates, unlike ratios, depend on it
    passages, queries = load_passages(args.passages), load_queries(args.queries)
    names = [*PRECISIONS, MINILM]
    variants = {name: build(name, args.batch_size) for name in names}
    tokens = sum(len(ids) for ids in LLaRAEncoder().build_inputs(passages, "passage"))
    vectors, first = {}, {}
    for name in names:  # the first call pays one-off costs: int8's compilation above all
        start = time.perf_counter()
        vectors[name] = variants[name][0](passages[: args.batch_size])
        first[name] = time.perf_counter() - start
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            start = time.perf_counter()
            variants[name][0](passages)
            seconds[name].append(time.perf_counter() - start)
    latency: dict[str, list[float]] = {name: [] for name in names}
    for query in queries:
        for name in names:
            start = time.perf_counter()
            variants[name][1](query)
            latency[name].append(1000 * (time.perf_counter() - start))
    rss = {name: in_subprocess(_rss_child, name, passages, args.batch_size)["peak_rss_mb"] for name in names}
    flags = cpu_flags()
    isa = instruction_set(flags)
    host = f"a {isa} CPU ({cpu_model()})"
    # results are named for the instructions they ran on: AVX512 + VNNI hosts (int8's AUTO row) unsuffixed
    if args.cap_isa:
        suffix = "_avx2_held"
    elif {"avx512f", "avx512_vnni"} <= flags:
        suffix = ""
    else:
        suffix = "_" + isa.split("+")[0].lower().replace("-", "_")
    if args.cap_isa:
        flags = avx2_flags(flags)
        caps = ", ".join(f"`{name}={value}`" for name, value in AVX2_CAPS.items())
        isa = instruction_set(flags)
        host = (
            f"{isa}: {host} held to AVX2 by {caps} (PyTorch ran at {torch.backends.cpu.get_cpu_capability()})"
        )
    auto = auto_precision(flags)
    rows = {}
    for name in names:
        median = statistics.median(seconds[name])
        ratios = [fp32 / own for fp32, own in zip(seconds["fp32"], seconds[name])]
        rows[name] = {
            "passages_per_s": len(passages) / median,
            "tokens_per_s": tokens / median if name != MINILM else None,
            "speedup_vs_fp32": statistics.median(ratios),
            "speedups_per_round": ratios,
            "query_ms_p50": float(np.percentile(latency[name], 50)),
            "query_ms_p95": float(np.percentile(latency[name], 95)),
            "peak_rss_mb": rss[name],
            "first_batch_s": first[name],
        }
    cosines = {
        name: float(np.sum(vectors[name] * vectors["fp32"], axis=1).min())
        for name in PRECISIONS
        if name != "fp32"
    }
    result = {
        "instruction_set": isa,
        "host": host,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": round(load, 2),
        "torch": torch.__version__,
        "passages": len(passages),
        "rounds": args.rounds,
        "queries": len(queries),
        "batch_size": args.batch_size,
        "llara_tokens": tokens,
        "auto": auto,
        "min_cosine_vs_fp32": cosines,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"encode_speed{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = [
        f"# Encoding speed by precision on {host}",
        "",
        f"`python benchmarks/encode_speed.py --passages {len(passages)} --rounds {args.rounds} --queries "
        f"{len(queries)}{' --cap-isa ' + args.cap_isa if args.cap_isa else ''}`: SmolLM2-135M + the shipped "
        f"adapter, {len(passages)} SciFact passages "
        f"({tokens} prompt tokens), batch {args.batch_size}, {result['threads']} threads, torch "
        f"{torch.__version__}. The variants alternate in one process, round by round; x fp32 is the median "
        f"of the per-round ratios, the rates this run's medians (1-minute load average {load:.2f} at the start "
        "on this 2-core machine: rates depend on it, ratios much less).",
        "",
        f"| encoder ({isa}) | passages/s | tokens/s | x fp32 | query p50 (ms) | query p95 (ms) "
        "| peak RSS (MB) | first batch (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        row = rows[name]
        label = MINILM if name == MINILM else f"LLaRA {name}" + (" (= auto here)" if name == auto else "")
        tokens_cell = f"{row['tokens_per_s']:.0f}" if row["tokens_per_s"] else "—"
        table.append(
            f"| {label} | {row['passages_per_s']:.2f} | {tokens_cell} | {row['speedup_vs_fp32']:.2f} | "
            f"{row['query_ms_p50']:.0f} | {row['query_ms_p95']:.0f} | {row['peak_rss_mb']:.0f} | "
            f"{row['first_batch_s']:.0f} |"
        )
    table += [
        "",
        f"- `--precision auto` on this CPU: **{auto}**; min cosine to the fp32 vectors: "
        + ", ".join(f"{name} {value:.6f}" for name, value in cosines.items())
        + ".",
        "- First batch: the first call's time, not in the rates (int8 compiles its kernels then).",
        "- Quality at each precision: `benchmarks/results/precision_quality.md`.",
    ]
    (RESULTS / f"encode_speed{suffix}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
