"""Trains the default adapter shipped in the package (``llara_rag/default_adapter``), one stage at a time.

1. ``unsupervised``: ``adapt`` (EBAE/EBAR, then label-free inverse-cloze InfoNCE) on the corpus text of
   every collection in ``../shared/data`` (wikitext2, scifact, cranfield, cacm, adi), read as one corpus;
   no query and no judgment is read.
2. ``supervised``: ``finetune`` that adapter on SciFact's ``qrels/train.tsv`` (train queries, BM25 hard
   negatives); test queries and test judgments are never read.
3. ``export``: the LoRA matrices and the sixteen special-token rows in fp16, the training record and a
   model card into the package folder.

Each stage keeps its adapter and checkpoints under ``build/default`` (relative to the repository, so
the records name no machine's paths): rerunning the command skips finished stages and resumes an
interrupted one.

    python benchmarks/train_default.py                 # every stage
    python benchmarks/train_default.py --stage supervised
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from llara_rag.adapter import (
    DEFAULT_ADAPTER,
    PEFT_FILES,
    read_adapter_info,
    write_adapter_info,
    write_model_card,
)
from llara_rag.training import AdaptationArguments, ContrastiveArguments, adapt, finetune

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("../shared/data")
"""Relative to the repository: the adapter's record names where its data came from, not this machine."""
CORPORA = ("wikitext2", "scifact", "cranfield", "cacm", "adi")
SUPERVISED = "scifact"
WORK = Path("build/default")
STAGES = ("unsupervised", "supervised", "export")
logger = logging.getLogger("benchmarks.train_default")


def mixed_corpus(path: Path) -> Path:
    """Every collection's documents in one JSONL (ids prefixed by collection), rewritten only when changed."""
    lines = []
    for name in CORPORA:
        with (DATA / name / "corpus.jsonl").open(encoding="utf-8") as rows:
            for line in rows:
                row = json.loads(line)
                text = "\n".join(part for part in (row.get("title"), row.get("text")) if part)
                lines.append(json.dumps({"_id": f"{name}/{row['_id']}", "text": text}) + "\n")
    content = "".join(lines)
    if not path.is_file() or path.read_text(encoding="utf-8") != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return path


def unsupervised(args: argparse.Namespace) -> Path:
    corpus = mixed_corpus(WORK / "corpus.jsonl")
    adapter = WORK / "unsupervised"
    adapt(
        corpus,
        adapter,
        AdaptationArguments(
            output_dir=str(WORK / "checkpoints" / "unsupervised"),
            start_adapter=None,  # made from the bare backbone, not from the adapter it replaces
            max_steps=args.steps,
            contrastive_max_steps=args.contrastive_steps,
            contrastive_learning_rate=args.contrastive_lr,
            whitening_dims=0,
            save_steps=args.save_steps,
            seed=args.seed,
        ),
    )
    return adapter


def supervised(args: argparse.Namespace) -> Path:
    adapter = WORK / "supervised"
    finetune(
        DATA / SUPERVISED,
        adapter,
        ContrastiveArguments(
            output_dir=str(WORK / "checkpoints" / "supervised"),
            start_adapter=str(WORK / "unsupervised"),
            max_steps=args.supervised_steps,
            negatives=args.negatives,
            temperature=args.temperature,
            learning_rate=args.supervised_lr,
            passage_max_length=args.passage_tokens,
            save_steps=args.save_steps,
            seed=args.seed,
        ),
    )
    return adapter


def export(source: Path, target: Path, args: argparse.Namespace) -> None:
    """The shipped copy: fp16 LoRA matrices and token rows, both stages' records, a card naming data and recipe."""
    from safetensors.torch import load_file, save_file

    supervised = read_adapter_info(source)
    unsupervised = read_adapter_info(WORK / "unsupervised")
    assert supervised is not None and unsupervised is not None, "train the two stages first"
    training = {
        "command": "python benchmarks/train_default.py",
        "arguments": {name: value for name, value in vars(args).items() if name != "stage"},
        "unsupervised": unsupervised.training,
        "supervised": {**supervised.training, "continued_from": "the unsupervised stage above"},
    }
    info = supervised.model_copy(update={"training": training})
    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(source / PEFT_FILES[1])
    save_file({name: tensor.half().contiguous() for name, tensor in weights.items()}, target / PEFT_FILES[1])
    (target / PEFT_FILES[0]).write_bytes((source / PEFT_FILES[0]).read_bytes())
    write_adapter_info(target, info)
    corpora = ", ".join(f"`{DATA / name / 'corpus.jsonl'}`" for name in CORPORA)
    stages = unsupervised.training["stages"]
    description = (
        "The default adapter of llara-rag for the embedded SmolLM2, loaded by `LLaRAEncoder()`, "
        "`LLaRAEmbedding()` and the command line unless `adapter='none'` is asked for. Made by "
        f"`python benchmarks/train_default.py`: (1) unsupervised, on the corpus text of {corpora} (documents "
        f"only, no query or judgment): {stages['ebae-ebar']['steps']} EBAE/EBAR steps of 8 windows, then "
        f"{stages['contrastive']['steps']} label-free inverse-cloze InfoNCE steps of 64 pairs (lr "
        f"{args.contrastive_lr:g}); (2) supervised, continuing that LoRA on SciFact's `qrels/train.tsv` "
        f"({supervised.training['steps']} steps of 64 train queries, {args.negatives} BM25 hard negative(s) "
        f"each, τ={args.temperature}, lr {args.supervised_lr:g}). Test queries and test judgments were never "
        "read. Weights stored in fp16."
    )
    write_model_card(target, info, description)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=STAGES, action="append", help="default: every stage, in order")
    contrastive_lr = AdaptationArguments.contrastive_learning_rate
    parser.add_argument("--steps", type=int, default=40, help="EBAE/EBAR steps (8 windows each)")
    parser.add_argument("--contrastive-steps", type=int, default=18, help="label-free steps (64 pairs each)")
    parser.add_argument("--contrastive-lr", type=float, default=contrastive_lr)
    parser.add_argument(
        "--supervised-steps", type=int, default=12, help="SciFact steps (64 queries each; 12: one pass)"
    )
    parser.add_argument("--negatives", type=int, default=1, help="BM25 hard negatives per SciFact query")
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument(
        "--supervised-lr",
        type=float,
        default=contrastive_lr,
        help="as the label-free stage's: a stage of a dozen InfoNCE steps is under-trained at 1e-4-2e-4 "
        "(benchmarks/results/adaptation.md)",
    )
    parser.add_argument("--passage-tokens", type=int, default=128, help="SciFact passage tokens trained on")
    parser.add_argument("--save-steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.chdir(ROOT)
    for stage in args.stage or STAGES:
        if stage == "unsupervised":
            logger.info("Unsupervised stages written to %s", unsupervised(args))
        elif stage == "supervised":
            logger.info("Supervised stage written to %s", supervised(args))
        else:
            export(WORK / "supervised", DEFAULT_ADAPTER, args)
            logger.info("Exported to %s", DEFAULT_ADAPTER.relative_to(ROOT))


if __name__ == "__main__":
    main()
