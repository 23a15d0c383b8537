"""The supervised stage on SciFact: unadapted, adapted, adapted + fine-tuned, MiniLM and BM25 on the test split.

One command reproduces the whole comparison (on a GPU it takes minutes; on a CPU, hours):

    python benchmarks/finetune.py                       # adapt on the corpus, fine-tune on train, evaluate on test

1. ``adapt`` the backbone, unsupervised, on the documents of ``corpus.jsonl`` (no query, no judgment);
2. ``finetune`` that adapter with InfoNCE on the **train** queries and ``qrels/train.tsv`` only, with
   hard negatives mined by BM25 for those train queries;
3. evaluate every system with the evaluation harness on the **test** queries and ``qrels/test.tsv``.

Leakage guard: training reads the collection through ``load_collection(data, "train")``, which holds only
the queries judged in ``qrels/train.tsv``, and mines negatives for those queries alone; test queries and
judgments are first loaded in step 3, after training (before it, only the query ids of both qrels files
are compared, and the script refuses to run if a query is judged in both splits). Existing adapters (``--adapted``,
``--finetuned``) skip their training step; ``--no-adapt`` fine-tunes the bare backbone instead;
``--subset-docs N [--subset-queries Q]`` scores Q random test queries on their judged documents plus random
others, N in all (quicker and easier than the full corpus: such numbers are labelled as a subset).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import time
from dataclasses import replace
from pathlib import Path

from llara_rag.adapter import read_adapter_info
from llara_rag.encoder import EncoderConfig
from llara_rag.evaluation import (
    BM25System,
    Collection,
    VectorCache,
    evaluate_systems,
    llara_system,
    load_collection,
    markdown_table,
    minilm_system,
)
from llara_rag.ranking.collections import QRELS_DIR, read_qrels
from llara_rag.training import AdaptationArguments, ContrastiveArguments, adapt, finetune

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
RESULTS = ROOT / "benchmarks" / "results"
logger = logging.getLogger("benchmarks.finetune")


def check_disjoint_splits(data: Path) -> int:
    """Refuses collections whose train and test splits share a query; returns the train query count."""
    train = read_qrels(data / QRELS_DIR / "train.tsv")
    test = read_qrels(data / QRELS_DIR / "test.tsv")
    shared = sorted(train.keys() & test.keys())
    if shared:
        raise SystemExit(
            f"{data}: queries {shared[:5]} are judged in both train and test; refusing to train."
        )
    return len(train)


def subset(collection: Collection, queries: int | None, documents: int, seed: int) -> Collection:
    """Random test queries with their judged documents plus random others, ``documents`` in all.

    A cheaper, easier stand-in for the full corpus, for machines that cannot encode it twice.
    """
    rng = random.Random(seed)
    query_ids = sorted(collection.queries)
    query_ids = sorted(rng.sample(query_ids, min(queries, len(query_ids)))) if queries else query_ids
    judged = {doc_id for query_id in query_ids for doc_id in collection.qrels[query_id]}
    others = [doc_id for doc_id in collection.doc_ids if doc_id not in judged]
    keep = judged | set(rng.sample(others, max(0, min(len(others), documents - len(judged)))))
    pairs = [
        (doc_id, text) for doc_id, text in zip(collection.doc_ids, collection.doc_texts) if doc_id in keep
    ]
    return replace(
        collection,
        name=f"{collection.name}-subset{len(query_ids)}q{len(pairs)}d",
        doc_ids=tuple(doc_id for doc_id, _ in pairs),
        doc_texts=tuple(text for _, text in pairs),
        queries={query_id: collection.queries[query_id] for query_id in query_ids},
        qrels={query_id: collection.qrels[query_id] for query_id in query_ids},
    )


def seconds_of(adapter: Path) -> float | None:
    info = read_adapter_info(adapter)
    return info.training.get("seconds") if info else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder with train and test qrels")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "finetune-benchmark", help="adapters go here"
    )
    parser.add_argument(
        "--adapted", type=Path, default=None, help="an existing adaptation adapter (skips step 1)"
    )
    parser.add_argument(
        "--finetuned", type=Path, default=None, help="an existing fine-tuned adapter (skips step 2)"
    )
    parser.add_argument("--no-adapt", action="store_true", help="fine-tune the bare backbone (no step 1)")
    parser.add_argument("--adapt-steps", type=int, default=600, help="adaptation steps of 16 windows")
    parser.add_argument("--epochs", type=float, default=1.0, help="fine-tuning passes over the train queries")
    parser.add_argument("--max-steps", type=int, default=-1, help="fine-tuning steps (default: --epochs)")
    parser.add_argument("--batch-size", type=int, default=8, help="queries per fine-tuning step")
    parser.add_argument("--negatives", type=int, default=15, help="BM25-mined hard negatives per query")
    parser.add_argument(
        "--passage-max-length", type=int, default=160, help="passage tokens while fine-tuning"
    )
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate")
    parser.add_argument("--subset-docs", type=int, default=None, help="evaluate on this many documents only")
    parser.add_argument(
        "--subset-queries", type=int, default=None, help="with --subset-docs: this many test queries"
    )
    parser.add_argument(
        "--eval-passage-max-length", type=int, default=512, help="LLaRA passage tokens at test time"
    )
    parser.add_argument("--device", default=None, help="evaluation device (training uses the Trainer's)")
    parser.add_argument("--output", default="finetune", help="results/<output>.{json,md}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    train_queries = check_disjoint_splits(args.data)
    args.work.mkdir(parents=True, exist_ok=True)
    adapted = None if args.no_adapt else args.adapted
    if not args.no_adapt and adapted is None:
        adapted = adapt(
            args.data,
            args.work / "adapted",
            AdaptationArguments(
                output_dir=str(args.work / "adapted.checkpoints"),
                model=args.model,
                max_steps=args.adapt_steps,
            ),
        ).adapter
    finetuned = args.finetuned
    if finetuned is None:
        target = args.work / ("finetuned" if adapted else "finetuned-base")
        finetuned = finetune(
            args.data,
            target,
            ContrastiveArguments(
                output_dir=f"{target}.checkpoints",
                model=args.model,
                start_adapter=str(adapted) if adapted else None,
                split="train",
                negatives=args.negatives,
                per_device_train_batch_size=args.batch_size,
                passage_max_length=args.passage_max_length,
                num_train_epochs=args.epochs,
                max_steps=args.max_steps,
                learning_rate=args.lr,
            ),
        ).adapter
    finetuned_info = read_adapter_info(finetuned)
    if finetuned_info is None or finetuned_info.training.get("data", {}).get("split") != "train":
        raise SystemExit(f"{finetuned} was not fine-tuned on a train split; refusing to score it on test.")

    collection = load_collection(args.data, "test")  # the first time anything reads the test split
    if args.subset_docs:
        collection = subset(collection, args.subset_queries, args.subset_docs, seed=0)
    cache = VectorCache()
    encoder = EncoderConfig(
        model=args.model, device=args.device, passage_max_length=args.eval_passage_max_length
    )
    systems = [
        BM25System(),
        minilm_system(cache, device=args.device),
        llara_system(encoder, cache, name="llara-unadapted"),
    ]
    if adapted:
        systems.append(
            llara_system(encoder.model_copy(update={"adapter": str(adapted)}), cache, name="llara-adapted")
        )
    name = "llara-adapted-finetuned" if finetuned_info.training.get("continued_from") else "llara-finetuned"
    systems.append(llara_system(encoder.model_copy(update={"adapter": str(finetuned)}), cache, name=name))
    started = time.perf_counter()
    result = evaluate_systems(collection, systems)

    training = {
        "adaptation_seconds": seconds_of(adapted) if adapted else None,
        "finetune_seconds": seconds_of(finetuned),
        "finetune": finetuned_info.training,
        "train_queries_in_qrels": train_queries,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": platform.machine(),
        "data": str(args.data),
        "subset_docs": args.subset_docs,
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "training": training,
        "result": json.loads(result.model_dump_json()),
    }
    (RESULTS / f"{args.output}.json").write_text(
        json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8"
    )
    times = ", ".join(
        f"{key.split('_')[0]} {value / 60:.1f} min"
        for key, value in training.items()
        if key.endswith("seconds") and value
    )
    steps = finetuned_info.training.get("steps")
    lines = [
        "# Supervised contrastive fine-tuning",
        "",
        f"`python benchmarks/finetune.py` on {platform.machine()}; model `{args.model}`; training time "
        f"{times or 'n/a'}; fine-tuning {steps} steps on the train split; "
        + (
            "**subset of the test queries and documents** — easier than, and not comparable with, full-corpus "
            "numbers; "
            if args.subset_docs
            else "full corpus; "
        )
        + f"LLaRA passages cut to {args.eval_passage_max_length} tokens at test time.",
        "",
        markdown_table(result),
    ]
    (RESULTS / f"{args.output}.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
