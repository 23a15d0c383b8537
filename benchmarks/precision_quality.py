"""nDCG@10 of the shipped default encoder at each precision, and its difference to fp32, per collection.

The evidence ``auto`` (``llara_rag.encoding.precision.AUTO``) and the fingerprint every precision shares stand
on: each precision alone, and a collection indexed at one and searched at the other, both ways. Dense rows only (test queries, the eval
harness); fp32 corpus vectors come from the vector cache when ``benchmarks/default.py`` made them, and every
other precision is cached under its own key. ``--cap-isa avx2`` encodes the other precisions held to AVX2
(as ``benchmarks/encode_speed.py --cap-isa avx2``, into a cache of their own) against the same fp32 vectors,
writing ``precision_quality_avx2.{json,md}``.

    python benchmarks/precision_quality.py [adi cranfield cacm scifact] [--precisions bf16,int8] [--cap-isa avx2]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from encode_speed import avx2_flags, hold_to_avx2

from llara_rag.encoding.adapter import DEFAULT_ADAPTER, adapter_digest
from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.encoding.precision import INT8_SCHEME, cpu_flags, instruction_set
from llara_rag.evaluation import (
    EvaluationConfig,
    VectorCache,
    build_systems,
    evaluate_systems,
    load_collection,
)
from llara_rag.ranking.beir import Collection
from llara_rag.ranking.cache import default_vector_dir
from llara_rag.ranking.systems import DenseSystem

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
TOLERANCE = 0.005
"""The nDCG@10 change issue #38 allows a precision ``auto`` picks; the tables set larger ones in bold."""


def earlier_rows(name: str) -> dict[str, dict[str, dict[str, float]]]:
    """Scores of earlier runs of the same default adapter and int8 scheme (collection -> field -> precision ->
    value), so a run of one precision on one collection adds its row to the table rather than replacing it."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if (earlier.get("adapter"), earlier.get("int8_scheme")) != (
        adapter_digest(DEFAULT_ADAPTER)[:8],
        INT8_SCHEME,
    ):
        return {}
    rows = earlier["rows"]
    return {row["collection"]: {"ndcg@10": row["ndcg@10"], "seconds": row["seconds"]} for row in rows}


def delta(value: float) -> str:
    return f"**{value:+.4f}**" if abs(value) > TOLERANCE else f"{value:+.4f}"


def write(rows: list[dict[str, object]], pending: list[str], name: str, host: str) -> None:
    precisions = sorted({p for row in rows for p in row["ndcg@10"] if p != "fp32"})  # type: ignore[attr-defined]
    lines = [
        "# nDCG@10 of the default encoder at each precision",
        "",
        f"`python benchmarks/precision_quality.py` on {host}; shipped default adapter "
        f"({adapter_digest(DEFAULT_ADAPTER)[:8]}), int8 as `{INT8_SCHEME}`, "
        f"test queries, dense retrieval only. Δ: minus fp32, bold beyond ±{TOLERANCE}; what `--precision auto` "
        "picks on this evidence: `llara_rag/encoding/precision.py: AUTO` and docs/encoder.md. 'p index': the "
        "corpus encoded at p, the queries at fp32 (a collection indexed at p, searched at fp32); 'p queries': "
        "the other way round.",
        "",
        "| collection | fp32 | " + " | ".join(f"{p} | Δ {p}" for p in precisions) + " |",
        "|---|---|" + "---|---|" * len(precisions),
    ]
    for row in rows:
        scores = row["ndcg@10"]
        assert isinstance(scores, dict)
        cells = [
            f"{scores[p]:.4f} | {delta(scores[p] - scores['fp32'])}" if p in scores else "— | —"
            for p in precisions
        ]
        lines.append(f"| {row['collection']} | {scores['fp32']:.4f} | " + " | ".join(cells) + " |")
    if pending:
        lines += ["", f"Not measured in this run: {', '.join(pending)}."]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    payload = {
        "host": host,
        "adapter": adapter_digest(DEFAULT_ADAPTER)[:8],
        "int8_scheme": INT8_SCHEME,
        "tolerance": TOLERANCE,
        "pending": pending,
        "rows": rows,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


class Mixed(DenseSystem):
    """The corpus vectors of ``index``, the queries encoded by ``queries``: a collection indexed at one
    precision and searched at another, which is what equal fingerprints would allow."""

    def __init__(self, index: DenseSystem, queries: DenseSystem) -> None:
        super().__init__(index.name, index.label, lambda: queries.encoder, index.cache, index.settings)
        self.index = index

    def corpus_vectors(self, collection: Collection) -> np.ndarray:
        return self.index.corpus_vectors(collection)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("collections", nargs="*", default=["adi", "cranfield", "cacm", "scifact"])
    parser.add_argument("--precisions", default="bf16,int8", help="compared with fp32, comma-separated")
    parser.add_argument("--cap-isa", choices=["avx2"], help="encode the other precisions held to AVX2")
    args = parser.parse_args()
    if args.cap_isa:
        hold_to_avx2()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    precisions = args.precisions.split(",")
    stem, host, cache = "precision_quality", f"a {instruction_set()} CPU", VectorCache()
    fp32 = EvaluationConfig(encoder=EncoderConfig(precision="fp32"), systems=("llara",))
    systems = {"fp32": build_systems(fp32, cache)[0]}
    if args.cap_isa:
        # their kernels, unlike fp32's, depend on the instruction set; the cache keys do not say which
        stem, cache = "precision_quality_avx2", VectorCache(default_vector_dir() / "avx2")
        host = f"{instruction_set(avx2_flags(cpu_flags()))} ({host} held to AVX2; fp32 vectors at full width)"
    for precision in precisions:
        config = EvaluationConfig(encoder=EncoderConfig(precision=precision), systems=("llara",))
        systems[precision] = build_systems(config, cache)[0]
    for precision in precisions:
        systems[f"{precision} index"] = Mixed(systems[precision], systems["fp32"])
        systems[f"{precision} queries"] = Mixed(systems["fp32"], systems[precision])
    merged = earlier_rows(stem)
    for done, name in enumerate(args.collections, start=1):
        collection = load_collection(DATA / name, "test")
        scores, seconds = {}, {}
        for precision, system in systems.items():
            start = time.perf_counter()
            result = evaluate_systems(collection, [system])
            seconds[precision] = round(time.perf_counter() - start, 1)
            scores[precision] = result.scores()["llara"]
        earlier = merged.get(name, {"ndcg@10": {}, "seconds": {}})
        merged[name] = {
            "ndcg@10": {**earlier["ndcg@10"], **scores},
            "seconds": {**earlier["seconds"], **seconds},
        }
        rows = [{"collection": collection, **fields} for collection, fields in merged.items()]
        write(rows, args.collections[done:], stem, host)
    print((RESULTS / f"{stem}.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
