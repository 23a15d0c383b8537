"""Retrieval quality of BM25, all-MiniLM-L6-v2, the raw LLM, LLaRA and the BM25 + LLaRA hybrid.

Runs the evaluation harness over the shared BEIR collections in tiers (:data:`TIERS`): BM25 on all,
then the encoders one collection at a time, smallest first, and rewrites ``results/quality.md`` and
``results/quality.json`` after each system, so an interrupted run keeps what it finished and names what
is pending. Corpus vectors are cached: a rerun only encodes what has not been encoded yet. A run on
some collections keeps the other collections' tables from the last run with the same settings, so the
collections can be measured in separate sittings:

    python benchmarks/quality.py [cranfield cacm scifact] [--model smollm2] [--adapter DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.evaluation import (
    EvaluationConfig,
    EvaluationResult,
    VectorCache,
    build_systems,
    evaluate_systems,
    load_collection,
    markdown_table,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
COLLECTIONS = ("cranfield", "cacm", "scifact")
SHOWN_ORDER = ("bm25", "minilm", "raw-llm", "llara", "hybrid")
TIERS = (("bm25",), ("minilm", "llara", "hybrid", "raw-llm"))
"""BM25 (seconds) on every collection first, then the encoders, one whole collection at a time."""


def write(
    results: list[EvaluationResult],
    kept: list[str],
    pending: list[str],
    config: EvaluationConfig,
    started: float,
) -> None:
    """Rewrites quality.md and quality.json with every finished row; ``kept`` names the collections whose
    tables come from an earlier run, ``pending`` what is not done."""
    adapter = f" + adapter `{config.encoder.adapter}`" if config.encoder.adapter else ""
    summary = (
        f"`python benchmarks/quality.py` on {platform.machine()}, model `{config.encoder.model}`{adapter}; "
        f"{config.split} split; metrics by pytrec_eval, averaged over judged queries; "
        f"{(time.time() - started) / 60:.0f} min of run time (cached corpus vectors make reruns fast)"
        + (f"; {', '.join(kept)} from an earlier run with the same configuration." if kept else ".")
    )
    header = ["# Retrieval quality", "", summary, ""]
    tables = [markdown_table(result) for result in results]
    footer = (
        [f"Pending (not finished when this file was written): {', '.join(pending)}.", ""] if pending else []
    )
    (RESULTS / "quality.md").write_text("\n".join(header + tables + footer), encoding="utf-8")
    payload = {
        "config": json.loads(config.model_dump_json()),
        "pending": pending,
        "kept_from_earlier_run": kept,
        "results": [json.loads(result.model_dump_json()) for result in results],
    }
    (RESULTS / "quality.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def shown_first(collection: str) -> tuple[int, str]:
    """:data:`COLLECTIONS` in their order, then any other collection by name."""
    return (
        (COLLECTIONS.index(collection), "") if collection in COLLECTIONS else (len(COLLECTIONS), collection)
    )


def earlier_results(config: EvaluationConfig, rerun: list[str]) -> dict[str, EvaluationResult]:
    """The last run's tables of the collections not in ``rerun``, if that run had the same configuration."""
    path = RESULTS / "quality.json"
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text(encoding="utf-8"))
    if EvaluationConfig.model_validate(stored["config"]) != config:
        return {}
    results = (EvaluationResult.model_validate(result) for result in stored["results"])
    return {result.collection: result for result in results if result.collection not in rerun}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "collections", nargs="*", default=list(COLLECTIONS), help="folders under ../shared/data"
    )
    parser.add_argument("--model", default=EncoderConfig().model)
    parser.add_argument("--adapter", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = EvaluationConfig(
        encoder=EncoderConfig(model=args.model, adapter=args.adapter), systems=SHOWN_ORDER
    )
    started = time.time()
    collections = {name: load_collection(DATA / name, config.split) for name in args.collections}
    systems = {system.name: system for system in build_systems(config, VectorCache())}
    work = [(collection, system) for tier in TIERS for collection in collections for system in tier]
    kept = earlier_results(config, args.collections)
    results: dict[str, EvaluationResult] = {}
    for done, (name, system) in enumerate(work, start=1):
        row = evaluate_systems(collections[name], [systems[system]])
        rows = [*results[name].systems, *row.systems] if name in results else row.systems
        results[name] = row.model_copy(
            update={"systems": sorted(rows, key=lambda r: SHOWN_ORDER.index(r.name))}
        )
        write_report(results[name], RESULTS / "quality")
        tables = {**kept, **results}
        pending = [f"{later} {system}" for later, system in work[done:]]
        write(
            [tables[shown] for shown in sorted(tables, key=shown_first)],
            sorted(kept),
            pending,
            config,
            started,
        )
    for result in results.values():
        print(markdown_table(result), flush=True)


if __name__ == "__main__":
    main()
