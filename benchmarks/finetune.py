"""The supervised stage on SciFact: a further pass on the train split, scored on the test split.

The shipped default already ends with one supervised pass on SciFact's train queries (BM25 negatives).
This Show continues it with ``finetune`` once more — negatives mined by the default itself, the
harder kind — and scores BM25, the start, the fine-tuned adapter and its hybrid with BM25:

    python benchmarks/finetune.py                 # continue the default on train, evaluate on test
    python benchmarks/finetune.py --start none    # the same recipe from the bare backbone
    python benchmarks/finetune.py --dtype float32 --passage-max-length 512 --epochs 4   # on a GPU

Leakage guard: training reads the collection through ``load_collection(data, "train")``, which holds only
the queries judged in ``qrels/train.tsv``, and mines negatives for those queries alone; test queries and
judgments are first loaded after training (before it, only the query ids of both qrels files are
compared, and the script refuses to run if a query is judged in both splits). ``--finetuned DIR`` scores
an existing adapter instead of training one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import get_args

from llara_rag.encoding.adapter import read_adapter_info
from llara_rag.encoding.backbone import Dtype
from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.errors import AdapterError
from llara_rag.evaluation import (
    BM25System,
    HybridSystem,
    VectorCache,
    evaluate_systems,
    llara_system,
    load_collection,
    markdown_table,
)
from llara_rag.evaluation.harness import EvaluationConfig
from llara_rag.ranking.beir import QRELS_DIR, read_qrels
from llara_rag.training import ContrastiveArguments, finetune

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


def machine() -> str:
    """The processor, and the GPU where one trained and scored."""
    import torch

    gpu = f" + {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return platform.machine() + gpu


def train(args: argparse.Namespace, start: str | None) -> Path:
    target = args.work / "finetuned"
    return finetune(
        os.path.relpath(args.data),  # recorded in the adapter: no machine's absolute path
        target,
        ContrastiveArguments(
            output_dir=f"{target}.checkpoints",
            model=args.model,
            start_adapter=start,
            split="train",
            miner=args.miner,
            negatives=args.negatives,
            temperature=args.temperature,
            per_device_train_batch_size=args.batch_size,
            passage_max_length=args.passage_max_length,
            chunk_tokens=args.chunk_tokens,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            logging_steps=1,
            save_steps=1,  # minutes a step here: an interrupted run resumes from its last step
        ),
    ).adapter


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder with train and test qrels")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument(
        "--start", default="default", help="the adapter to continue: 'default', a directory, or 'none'"
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "finetune-benchmark", help="adapters go here"
    )
    parser.add_argument(
        "--finetuned", type=Path, default=None, help="score this fine-tuned adapter instead of training one"
    )
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the train queries")
    parser.add_argument("--batch-size", type=int, default=64, help="queries a step")
    parser.add_argument("--miner", default="dense", help="what ranks the negatives: dense (the start), bm25")
    parser.add_argument("--negatives", type=int, default=1, help="mined hard negatives per query")
    parser.add_argument("--temperature", type=float, default=0.05, help="InfoNCE τ")
    parser.add_argument("--passage-max-length", type=int, default=128, help="passage tokens in training")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    parser.add_argument(
        "--chunk-tokens", type=int, default=ContrastiveArguments.chunk_tokens, help="bounds training memory"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=get_args(Dtype),
        help="the scored encoders' dtype (default: fp32 on CPU, bf16 on GPU)",
    )
    parser.add_argument("--output", default="finetune", help="results/<output>.{json,md}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    train_queries = check_disjoint_splits(args.data)
    start = None if args.start == "none" else args.start
    finetuned = args.finetuned or train(args, start)
    try:
        info = read_adapter_info(finetuned)
    except AdapterError as error:
        raise SystemExit(str(error)) from None
    if info is None or info.training.get("data", {}).get("split") != "train":
        raise SystemExit(f"{finetuned} was not fine-tuned on a train split; refusing to score it on test.")

    training = info.training
    recipe = training["recipe"]
    collection = load_collection(args.data, "test")  # the first time anything reads the test split
    cache = VectorCache()
    bm25 = BM25System()
    tuned = llara_system(
        EncoderConfig(model=recipe["model"], adapter=str(finetuned), dtype=args.dtype),
        cache,
        name="finetuned",
    )
    weight = EvaluationConfig().bm25_weight
    systems = [
        bm25,
        llara_system(
            EncoderConfig(model=recipe["model"], adapter=recipe["start_adapter"], dtype=args.dtype),
            cache,
            name="start",
        ),
        tuned,
        HybridSystem([bm25, tuned], [weight, 1 - weight], name="finetuned-hybrid"),
    ]
    started = time.perf_counter()
    result = evaluate_systems(collection, systems)
    scores = result.scores()

    RESULTS.mkdir(parents=True, exist_ok=True)
    host = machine()
    payload = {
        "machine": host,
        "dtype": args.dtype,
        "data": os.path.relpath(args.data, ROOT),
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "train_queries_in_qrels": train_queries,
        "finetune": info.training,
        "result": json.loads(result.model_dump_json()),
    }
    (RESULTS / f"{args.output}.json").write_text(
        json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8"
    )
    goal = "met" if scores["finetuned"] >= scores["bm25"] else "not met"
    lines = [
        "# Supervised contrastive fine-tuning on SciFact train, scored on SciFact test",
        "",
        (
            f"`python benchmarks/finetune.py` on {host}, model `{recipe['model']}`: `finetune` "
            f"continues `{recipe['start_adapter']}` on the {train_queries} train queries of `qrels/train.tsv` — "
            f"{training['steps']} steps of {recipe['per_device_train_batch_size']} queries, "
            f"{recipe['negatives']} hard negative(s) each mined by {recipe['miner']} (ranks "
            f"{recipe['skip_top'] + 1}–{recipe['mine_depth']}), τ {recipe['temperature']}, lr "
            f"{recipe['learning_rate']:g}, passages cut to {recipe['passage_max_length']} tokens — in "
            f"{training['seconds'] / 60:.0f} min of wall time; test queries scored with passages of 512 tokens."
        ),
        "",
        markdown_table(result),
        "",
        f"- fine-tuned dense >= BM25: {scores['finetuned']:.3f} vs {scores['bm25']:.3f} — {goal}",
        "",
        "## How test data is kept out of training",
        "",
        (
            '- `finetune` reads the collection through `load_collection(data, "train")`: only the queries judged '
            "in `qrels/train.tsv`; negatives are mined by ranking those queries alone "
            "(`tests/training/test_supervised.py::test_beir_mining_reads_only_the_given_split`)."
        ),
        (
            "- The corpus is shared between the splits (it is the collection, not a label); test judgments never "
            "filter the negatives."
        ),
        (
            f"- Before training, only the query ids of the two qrels files are compared; the script refuses to run "
            f"if a query is judged in both ({train_queries} train queries, {len(collection.queries)} test queries, "
            "none shared). Test queries and judgments are loaded after training, and an adapter whose "
            "`llara_config.json` does not name the `train` split is refused."
        ),
        "",
    ]
    (RESULTS / f"{args.output}.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
