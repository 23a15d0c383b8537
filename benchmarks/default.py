"""The shipped default adapter against BM25, MiniLM and the bare backbone, on every shared collection.

One row per system on each collection's test queries: BM25, all-MiniLM-L6-v2, the bare backbone (the
default before an adapter shipped), the shipped default (``LLaRAEncoder()``) and the default + BM25
hybrid, beside MiniLM + BM25 (the hybrid a user could build without LLaRA). The default's training
(``benchmarks/train_default.py``) read no text of adi, Cranfield or CACM, so their rows are zero-shot;
it read SciFact's corpus and train queries (never its test queries), so SciFact's row is in-domain.
Rows that do not depend on the adapter (MiniLM, the bare backbone) are taken from
``results/quality.json`` when it measured them with the same harness on the same split
(``--remeasure`` measures them again; corpus vectors are cached either way).

    python benchmarks/default.py [adi cranfield cacm scifact] [--remeasure] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

from llara_rag.encoding.adapter import DEFAULT_ADAPTER, adapter_digest, read_adapter_info
from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.evaluation import (
    EvaluationConfig,
    EvaluationResult,
    SystemResult,
    VectorCache,
    build_systems,
    evaluate_systems,
    load_collection,
    markdown_table,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
COLLECTIONS = ("adi", "cranfield", "cacm", "scifact")
SYSTEMS = ("bm25", "minilm", "minilm-hybrid", "llara-base", "llara", "hybrid")
FINETUNED = ("finetuned", "finetuned-hybrid")
"""benchmarks/finetune.py's rows: the default after one more supervised pass on SciFact train."""
REUSABLE = {"minilm": "minilm", "llara-base": "llara"}
"""Systems independent of the shipped adapter -> their name in quality.json (measured without an adapter)."""
SUPERVISED = "scifact"
"""The one collection whose corpus and train queries the default read."""
DENSE_SHARE, HYBRID_GAIN, DENSE_SCIFACT = 0.8, 0.03, 0.62
logger = logging.getLogger("benchmarks.default")


def measured_rows(collection: str, split: str) -> dict[str, SystemResult]:
    """The adapter-independent rows quality.json holds for ``collection``, renamed to this table's names."""
    path = RESULTS / "quality.json"
    if not path.is_file():
        return {}
    payload = json.loads(path.read_text(encoding="utf-8"))
    if payload["config"]["encoder"]["adapter"] is not None:
        return {}
    rows = {}
    for result in payload["results"]:
        if result["collection"] != collection or result["split"] != split:
            continue
        by_name = {row["name"]: row for row in result["systems"]}
        for name, source in REUSABLE.items():
            if source in by_name:
                row = SystemResult.model_validate(by_name[source])
                rows[name] = row.model_copy(
                    update={"name": name, "settings": {**row.settings, "from": "results/quality.json"}}
                )
    return rows


def finetuned_rows(collection: str, split: str) -> list[SystemResult]:
    """The default fine-tuned once more on SciFact train (``results/finetune.json``), if that run started
    from this very default (same digest) and scored ``collection``'s ``split``."""
    path = RESULTS / "finetune.json"
    if collection != SUPERVISED or not path.is_file():
        return []
    payload = json.loads(path.read_text(encoding="utf-8"))
    recipe = payload["finetune"]["recipe"]
    result = payload["result"]
    started_here = recipe.get("start_adapter_digest") == adapter_digest(DEFAULT_ADAPTER)
    if not started_here or result["collection"] != collection or result["split"] != split:
        return []
    rows = {row["name"]: SystemResult.model_validate(row) for row in result["systems"]}
    return [
        rows[name].model_copy(update={"settings": {**rows[name].settings, "from": "results/finetune.json"}})
        for name in FINETUNED
        if name in rows
    ]


def goals(result: EvaluationResult) -> list[str]:
    """Issue #37's goals for this collection, and where the default stands against MiniLM and its hybrid."""
    scores = result.scores()
    bm25, dense, hybrid = scores["bm25"], scores["llara"], scores["hybrid"]
    checks = []
    if result.collection == SUPERVISED:
        checks.append((f"default dense >= {DENSE_SCIFACT}", dense, DENSE_SCIFACT))
        if "finetuned" in scores:
            checks.append(("default + one more supervised pass dense >= BM25", scores["finetuned"], bm25))
    else:
        checks.append((f"zero-shot default dense >= {DENSE_SHARE} x BM25", dense, DENSE_SHARE * bm25))
    checks.append((f"hybrid >= BM25 + {HYBRID_GAIN}", hybrid, bm25 + HYBRID_GAIN))
    if "minilm" in scores:
        checks.append(("default dense >= all-MiniLM-L6-v2", dense, scores["minilm"]))
    if "minilm-hybrid" in scores:
        checks.append(("hybrid >= MiniLM + BM25", hybrid, scores["minilm-hybrid"]))
    return [
        f"- {name}: {value:.3f} vs {target:.3f} — {'met' if value >= target else 'not met'}"
        for name, value, target in checks
    ]


def earlier_results(digest: str) -> dict[str, tuple[EvaluationResult, str]]:
    """collection -> (result, precision) of ``default.json``, when it measured the adapter of ``digest``."""
    path = RESULTS / "default.json"
    if not path.is_file():
        return {}
    payload = json.loads(path.read_text(encoding="utf-8"))
    if payload.get("adapter_digest") != digest:
        return {}
    return {
        result["collection"]: (
            EvaluationResult.model_validate(result),
            payload["precision"][result["collection"]],
        )
        for result in payload["results"]
    }


def write(
    results: dict[str, tuple[EvaluationResult, str]], pending: list[str], minutes: float, digest: str
) -> None:
    """Both result files, collections in ``COLLECTIONS`` order; each names the precision it ran at."""
    info = read_adapter_info(DEFAULT_ADAPTER)
    recipe = info.training.get("arguments", {}) if info else {}
    ordered = sorted(
        results, key=lambda name: COLLECTIONS.index(name) if name in COLLECTIONS else len(COLLECTIONS)
    )
    precisions = ", ".join(f"{name} {results[name][1]}" for name in ordered)
    header = [
        "# The shipped default adapter",
        "",
        (
            f"`python benchmarks/default.py` on {platform.machine()}, model `smollm2` ({precisions}), test "
            f"queries; {minutes:.0f} min of run time for the last collections measured. Default adapter "
            f"`{DEFAULT_ADAPTER.relative_to(ROOT)}` made by `python benchmarks/train_default.py` ({recipe})."
        ),
        "",
        (
            "**Zero-shot on adi, Cranfield and CACM**: the default's training read no text of them (its "
            "documents: wikitext2, SciFact, SQuAD; its queries: SciFact's and SQuAD's train splits). SciFact is "
            "in-domain: its corpus and train queries were read, never its test queries. Rows marked † come "
            "from other results of the same harness and split: MiniLM and the bare backbone from "
            "`results/quality.json`; on SciFact, the default after one more supervised pass on SciFact train from "
            "`results/finetune.json` (`python benchmarks/finetune.py`), when that run started from this default."
        ),
        "",
    ]
    body = []
    for name in ordered:
        result = results[name][0]
        table = markdown_table(result).splitlines()
        for index, row in enumerate(result.systems):
            if row.settings.get("from"):
                table[4 + index] = table[4 + index].replace(f"| {row.label} |", f"| {row.label} † |", 1)
        checks = goals(result)
        body += [*table, "", *checks, ""] if checks else [*table, ""]
    footer = [f"Pending: {', '.join(pending)}.", ""] if pending else []
    (RESULTS / "default.md").write_text("\n".join(header + body + footer), encoding="utf-8")
    payload = {
        "adapter": str(DEFAULT_ADAPTER.relative_to(ROOT)),
        "adapter_digest": digest,
        "recipe": recipe,
        "pending": pending,
        "precision": {name: results[name][1] for name in ordered},
        "results": [json.loads(results[name][0].model_dump_json()) for name in ordered],
    }
    (RESULTS / "default.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "collections", nargs="*", default=list(COLLECTIONS), help="folders under ../shared/data"
    )
    parser.add_argument("--remeasure", action="store_true", help="measure MiniLM and the bare backbone again")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="the default's arithmetic; the other collections' rows of default.json are kept when they measured "
        "this same adapter",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = EvaluationConfig(encoder=EncoderConfig(precision=args.precision), systems=SYSTEMS)
    systems = {system.name: system for system in build_systems(config, VectorCache())}
    digest = adapter_digest(DEFAULT_ADAPTER)
    started, results = time.time(), earlier_results(digest)
    for done, name in enumerate(args.collections, start=1):
        collection = load_collection(DATA / name, config.split)
        reused = {} if args.remeasure else measured_rows(name, config.split)
        result = evaluate_systems(collection, [systems[s] for s in SYSTEMS if s not in reused])
        rows = sorted([*result.systems, *reused.values()], key=lambda row: SYSTEMS.index(row.name))
        rows += finetuned_rows(name, config.split)
        results[name] = (result.model_copy(update={"systems": rows}), args.precision)
        write(results, args.collections[done:], (time.time() - started) / 60, digest)
    for name in args.collections:
        print(markdown_table(results[name][0]), flush=True)


if __name__ == "__main__":
    main()
