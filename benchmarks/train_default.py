"""Trains the default adapter shipped in the package (``llara_rag/default_adapter``), one stage at a time.

1. ``unsupervised``: ``adapt`` (EBAE/EBAR, then label-free inverse-cloze InfoNCE) on general and training
   text of ``../shared/data`` (the wikitext2 articles, the SciFact abstracts, the SQuAD paragraphs), read as
   one corpus; no query and no judgment is read.
2. ``supervised``: ``finetune`` that adapter on train pairs of SciFact (scientific claims) and SQuAD
   (general questions on Wikipedia), drawn in equal parts with one BM25 hard negative each; test queries
   and test judgments are never read.

No text of Cranfield, CACM or adi is read, so the default's figures there are zero-shot: what a user gets
on their own documents. Texts are lower-cased in training and serving (``lowercase``), so capitals, as
typed or as indexed, do not change a vector.
3. ``export``: the LoRA matrices and the sixteen special-token rows in fp16, the training record, a model
   card and the supervised stage's pairs (gzipped: ``adapt --stages ...,supervised`` replays them) into the
   package folder.

Each stage keeps its adapter and checkpoints under ``build/default`` (relative to the repository, so
the records name no machine's paths): rerunning the command skips finished stages and resumes an
interrupted one.

    python benchmarks/train_default.py                 # every stage
    python benchmarks/train_default.py --stage supervised
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
from collections import defaultdict
from pathlib import Path

from llara_rag.encoding.adapter import (
    DEFAULT_ADAPTER,
    DEFAULT_SUPERVISED_PAIRS,
    DEFAULT_UNSUPERVISED,
    PEFT_FILES,
    SHIPPED,
    AdapterInfo,
    read_adapter_info,
    write_adapter_info,
    write_model_card,
)
from llara_rag.training import AdaptationArguments, ContrastiveArguments, adapt, finetune
from llara_rag.training.data.pairs import MiningConfig, TrainingGroup, load_groups

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("../shared/data")
"""Relative to the repository: the adapter's record names where its data came from, not this machine."""
CORPORA = ("wikitext2", "scifact", "squad-dev")
SUPERVISED = ("scifact", "squad-dev")
"""Train splits (``qrels/train.tsv``) the supervised stage draws its groups from, in equal parts."""
WORK = Path("build/default")
STAGES = ("unsupervised", "supervised", "export")
logger = logging.getLogger("benchmarks.train_default")


def write_if_changed(path: Path, content: str) -> Path:
    """Written only when the content differs, so an unchanged input keeps its file (and a resumed stage its
    digest)."""
    if not path.is_file() or path.read_text(encoding="utf-8") != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return path


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
    return write_if_changed(path, content)


def unsupervised(args: argparse.Namespace) -> Path:
    corpus = mixed_corpus(WORK / "corpus.jsonl")
    adapter = WORK / "unsupervised"
    adapt(
        corpus,
        adapter,
        AdaptationArguments(
            output_dir=str(WORK / "checkpoints" / "unsupervised"),
            start_adapter=None,  # made from the bare backbone, not from the adapter it replaces
            stages="ebae-ebar,contrastive",  # the supervised stage is the next one, on its own pairs
            max_steps=args.steps,
            contrastive_max_steps=args.contrastive_steps,
            contrastive_learning_rate=args.contrastive_lr,
            whitening_dims=0,
            lowercase=args.lowercase,
            save_steps=args.save_steps,
            seed=args.seed,
        ),
    )
    return adapter


def one_per_passage(groups: list[TrainingGroup], count: int, rng: random.Random) -> list[TrainingGroup]:
    """``count`` groups, each asking about another passage while any is left (SQuAD asks ~5 per paragraph)."""
    by_passage: dict[str, list[TrainingGroup]] = defaultdict(list)
    for group in groups:
        by_passage[group.positives[0]].append(group)
    for asked in by_passage.values():
        rng.shuffle(asked)
    rounds = max(len(asked) for asked in by_passage.values())
    ordered = []
    for round_ in range(rounds):
        layer = [asked[round_] for asked in by_passage.values() if round_ < len(asked)]
        rng.shuffle(layer)
        ordered += layer
    return ordered[:count]


def supervised_pairs(args: argparse.Namespace, path: Path) -> Path:
    """The train groups of every ``SUPERVISED`` collection, mined and mixed into one JSONL (rewritten when changed)."""
    rng = random.Random(args.seed)
    mining = MiningConfig(miner="bm25", negatives=args.negatives, seed=args.seed)
    mixed = []
    for name in SUPERVISED:
        groups, _ = load_groups(DATA / name, "train", mining)
        drawn = one_per_passage(groups, args.groups_per_source, rng)
        logger.info("%d of the %d train groups of %s drawn", len(drawn), len(groups), name)
        mixed += drawn
    rng.shuffle(mixed)
    content = "".join(
        json.dumps({"query": group.query, "pos": list(group.positives), "neg": list(group.negatives)}) + "\n"
        for group in mixed
    )
    return write_if_changed(path, content)


def pairs_file(args: argparse.Namespace) -> Path:
    """The supervised stage's groups, beside its adapter."""
    name = "pairs.jsonl" if args.supervised_name == "supervised" else f"{args.supervised_name}.pairs.jsonl"
    return WORK / name


def supervised(args: argparse.Namespace) -> Path:
    adapter = WORK / args.supervised_name
    finetune(
        supervised_pairs(args, pairs_file(args)),
        adapter,
        ContrastiveArguments(
            output_dir=str(WORK / "checkpoints" / args.supervised_name),
            start_adapter=str(WORK / "unsupervised"),
            max_steps=args.supervised_steps,
            negatives=args.negatives,
            miner="none",
            lowercase=args.lowercase,
            temperature=args.temperature,
            learning_rate=args.supervised_lr,
            passage_max_length=args.passage_tokens,
            save_steps=args.save_steps,
            seed=args.seed,
        ),
    )
    return adapter


def source_line(name: str) -> str:
    """A collection's name, origin and license, as its ``SOURCE.json`` records them."""
    record = json.loads((DATA / name / "SOURCE.json").read_text(encoding="utf-8"))
    origin = record.get("original") or record.get("origin") or record.get("source")
    return f"- `{DATA / name}`: {record.get('name', name)} ({origin}). License: {record['license']}"


def ship(source: Path, target: Path, info: AdapterInfo, description: str) -> None:
    """An adapter copied into the package: fp16 LoRA matrices and token rows, its record and model card."""
    from safetensors.torch import load_file, save_file

    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(source / PEFT_FILES[1])
    save_file({name: tensor.half().contiguous() for name, tensor in weights.items()}, target / PEFT_FILES[1])
    (target / PEFT_FILES[0]).write_bytes((source / PEFT_FILES[0]).read_bytes())
    write_adapter_info(target, info)
    write_model_card(target, info, description)


def export(source: Path, target: Path, args: argparse.Namespace) -> None:
    """The shipped copies: the default (both stages' records, a card naming data and recipe), its unsupervised
    stage and its supervised groups, which ``adapt`` continues and replays."""
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
    # mtime 0: the same bytes every export
    with gzip.GzipFile(target / DEFAULT_SUPERVISED_PAIRS.name, "wb", mtime=0) as pairs:
        pairs.write(pairs_file(args).read_bytes())
    stages = unsupervised.training["stages"]
    data = supervised.training["data"]
    description = (
        "The default adapter of llara-rag for the embedded SmolLM2, loaded by `LLaRAEncoder()`, "
        "`LLaRAEmbedding()` and the command line unless `adapter='none'` is asked for. Made by "
        f"`python benchmarks/train_default.py`: (1) unsupervised, on the documents of {', '.join(CORPORA)} "
        f"(no query, no judgment): {stages['ebae-ebar']['steps']} EBAE/EBAR steps of 8 windows, then "
        f"{stages['contrastive']['steps']} label-free inverse-cloze InfoNCE steps of 64 pairs (lr "
        f"{args.contrastive_lr:g}); (2) supervised, continuing that LoRA on {data['groups']} train queries, "
        f"up to {args.groups_per_source} from the `qrels/train.tsv` of each of {', '.join(SUPERVISED)} (one per "
        f"passage while any is left), {supervised.training['steps']} steps of 64 queries with {args.negatives} BM25 hard "
        f"negative(s) each, τ={args.temperature}, lr {args.supervised_lr:g}. Texts lower-cased in training and "
        f"serving: {args.lowercase}. Test queries and test judgments were never read, and no text of the "
        "collections the project measures it on zero-shot (Cranfield, CACM, adi). Weights stored in fp16. "
        f"`{DEFAULT_SUPERVISED_PAIRS.name}` holds the supervised stage's groups (query, positive, negative) "
        f"and `{SHIPPED[DEFAULT_UNSUPERVISED].name}/` the unsupervised stage: `llara-rag adapt` continues that "
        "stage on a user's documents, then replays these groups. SQuAD's share-alike license applies to the "
        "SQuAD groups.\n\n"
        "## Data\n" + "\n".join(source_line(name) for name in dict.fromkeys(CORPORA + SUPERVISED))
    )
    ship(source, target, info, description)
    ship(
        WORK / "unsupervised",
        target / SHIPPED[DEFAULT_UNSUPERVISED].name,
        unsupervised,
        "Stage (1) of llara-rag's default adapter for the embedded SmolLM2, before its supervised stage "
        f"(`--adapter {DEFAULT_UNSUPERVISED}`): label-free, on the documents of {', '.join(CORPORA)}; made "
        "and licensed as the card one folder up says. It is where `llara-rag adapt` starts: the user's "
        "documents are trained on after it, then the default's supervised groups again.",
    )


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
        "--groups-per-source",
        type=int,
        default=512,
        help="train queries drawn from each supervised collection",
    )
    parser.add_argument(
        "--supervised-steps", type=int, default=16, help="supervised steps (64 queries each; 16: one pass)"
    )
    parser.add_argument(
        "--supervised-name",
        default="supervised",
        help="folder of the supervised stage under build/default (and what export ships): another name "
        "trains a candidate beside the current one",
    )
    parser.add_argument("--negatives", type=int, default=1, help="BM25 hard negatives per train query")
    parser.add_argument("--lowercase", choices=("on", "off"), default="on", help="train on lower-cased text")
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
            export(WORK / args.supervised_name, DEFAULT_ADAPTER, args)
            logger.info("Exported to %s", DEFAULT_ADAPTER.relative_to(ROOT))


if __name__ == "__main__":
    main()
