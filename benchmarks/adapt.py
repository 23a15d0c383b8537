"""Unsupervised adaptation on the corpus text of BEIR collections, measured before and after.

For each collection: ``adapt`` the backbone on ``corpus.jsonl`` alone (no queries, no qrels), then
run the evaluation harness on BM25, the unadapted and adapted LLaRA encoders and the hybrid (adapted
+ BM25). Writes ``benchmarks/results/adaptation.{json,md}``. Adapters live in ``runs/adapt-<name>``;
an existing adapter is reused and an interrupted training resumes from its checkpoints, so rerunning
the command continues where it stopped.

    python benchmarks/adapt.py                      # cranfield and cacm, the defaults below
    python benchmarks/adapt.py --datasets adi --max-steps 20
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from llara_rag.adaptation import AdaptationArguments, adapt
from llara_rag.adapter import read_adapter_info
from llara_rag.backbone import DEFAULT_MODEL
from llara_rag.encoder import EncoderConfig
from llara_rag.evaluation import EvaluationConfig, evaluate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SYSTEMS = ("bm25", "llara-base", "llara", "hybrid")
LABELS = {"llara-base": "unadapted", "llara": "adapted", "bm25": "BM25", "hybrid": "hybrid (adapted + BM25)"}
logger = logging.getLogger("benchmarks.adapt")
GOAL_GAIN, GOAL_BM25_SHARE = 0.20, 0.8


def train(name: str, args: argparse.Namespace) -> dict:
    adapter = args.runs / f"adapt-{name}"
    if not (adapter / "llara_config.json").is_file():
        training = AdaptationArguments(
            output_dir=f"{adapter}.checkpoints",
            model=args.model,
            max_steps=args.max_steps,
            learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size,
            window_tokens=args.window,
            save_steps=30,
        )
        adapt(DATA / name, adapter, training)
    logger.info("Using the adapter in %s", adapter)
    info = read_adapter_info(adapter)
    assert info is not None
    return {"adapter": str(adapter), **info.training}


def measure(name: str, adapter: str, model: str) -> dict[str, dict[str, float]]:
    config = EvaluationConfig(encoder=EncoderConfig(model=model, adapter=adapter), systems=SYSTEMS)
    result = evaluate(DATA / name, config)
    return {
        system.name: {k: round(system.metrics[k], 4) for k in ("nDCG@10", "Recall@100")}
        for system in result.systems
    }


def verdict(scores: dict[str, dict[str, float]]) -> dict[str, bool]:
    ndcg = {system: values["nDCG@10"] for system, values in scores.items()}
    return {
        f"adapted >= unadapted + {GOAL_GAIN}": ndcg["llara"] >= ndcg["llara-base"] + GOAL_GAIN,
        f"adapted >= {GOAL_BM25_SHARE} x BM25": ndcg["llara"] >= GOAL_BM25_SHARE * ndcg["bm25"],
        "hybrid > BM25": ndcg["hybrid"] > ndcg["bm25"],
    }


def markdown(rows: dict[str, dict], model: str) -> str:
    lines = [
        "# Unsupervised adaptation (corpus text only)",
        "",
        f"`python benchmarks/adapt.py`: LLaRA EBAE/EBAR adaptation of `{model}` on each collection's",
        "`corpus.jsonl` alone (no queries, no qrels), then the evaluation harness on its test queries.",
        "CPU, a 2-core machine shared with other jobs, so wall minutes overstate the cost; CPU minutes",
        "count this process's CPU time (both cores).",
        "",
        "| collection | system | nDCG@10 | Recall@100 |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        for system in SYSTEMS:
            values = row["scores"][system]
            lines.append(
                f"| {name} | {LABELS[system]} | {values['nDCG@10']:.3f} | {values['Recall@100']:.3f} |"
            )
    lines += [
        "",
        "| collection | steps | windows | wall min | CPU min | goals met |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        t = row["training"]
        goals = ", ".join(f"{goal}: {'yes' if ok else 'no'}" for goal, ok in row["goals"].items())
        lines.append(
            f"| {name} | {t['steps']} | {t['corpus']['records']} | {t['seconds'] / 60:.0f} | "
            f"{t.get('cpu_seconds', float('nan')) / 60:.0f} | {goals} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="cranfield,cacm")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--max-steps", type=int, default=90)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="where adapters and checkpoints go")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where adaptation.{json,md} go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = {}
    for name in args.datasets.split(","):
        started = time.perf_counter()
        training = train(name, args)
        scores = measure(name, training["adapter"], args.model)
        rows[name] = {
            "training": training,
            "scores": scores,
            "goals": verdict(scores),
            "seconds": round(time.perf_counter() - started, 1),
        }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "adaptation.json").write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
    (args.results / "adaptation.md").write_text(markdown(rows, args.model), encoding="utf-8")
    print(markdown(rows, args.model))


if __name__ == "__main__":
    main()
