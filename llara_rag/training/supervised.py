"""The supervised LLaRA stage: contrastive fine-tuning on labelled queries with hard negatives.

``finetune(PAIRS, OUTPUT, ContrastiveArguments(...))`` builds groups of one query, one positive and K
hard negatives (:mod:`llara_rag.training.pairs`), embeds queries and passages exactly as the encoder
serves them (same prompt ids, same pooling) and minimises InfoNCE over ``q·p / τ``: each query must pick
its positive among its own negatives, every other group's passages in the batch and, when run
distributed, every other device's passages too. The result is an adapter directory like the
adaptation stage's, loaded by the encoder, the store and every integration the same way.

Given ``start_adapter`` (an adaptation adapter), training continues that LoRA rather than merging it and
stacking a fresh one: the output stays one LoRA relative to the base backbone, self-contained, with the
special-token rows the adaptation learnt still trainable.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from llara_rag.encoding.adapter import TrainedLengths
from llara_rag.encoding.backbone import Backbone, load_backbone
from llara_rag.encoding.encoder import EncoderConfig, PromptInputs, collate
from llara_rag.errors import InvalidInputError
from llara_rag.training.corpus import document_key
from llara_rag.training.info_nce import DEFAULT_CHUNK_TOKENS, CachedInfoNCE, InfoNCEConfig
from llara_rag.training.pairs import Miner, MiningConfig, PairsSummary, TrainingGroup, load_groups
from llara_rag.training.trainer import (
    AdapterTrainer,
    StageArguments,
    StepEvaluator,
    continued_lora_model,
    lora_model,
    run_stage,
    start_run,
)

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

logger = logging.getLogger(__name__)

MINING = MiningConfig.model_fields
"""The miner's settings, whose defaults the fine-tuning flags take."""


@dataclass
class ContrastiveArguments(StageArguments):
    """Training arguments of the supervised stage; the defaults follow the reference where one CPU allows."""

    split: str = field(
        default="train",
        metadata={"flag": "--split", "help": "qrels/<split>.tsv of a BEIR folder to train on"},
    )
    temperature: float = field(
        default=0.01, metadata={"flag": "--temperature", "help": "InfoNCE temperature τ over q·p"}
    )
    negatives: int = field(
        default=MINING["negatives"].default,
        metadata={"flag": "--negatives", "help": "hard negatives per query (group = 1 positive + K)"},
    )
    miner: str = field(
        default=MINING["miner"].default,
        metadata={
            "flag": "--miner",
            "choices": get_args(Miner),
            "help": "what ranks the negatives' candidates: bm25, the starting encoder (dense), or none (given "
            "negatives only)",
        },
    )
    skip_top: int = field(
        default=MINING["skip_top"].default,
        metadata={"flag": "--skip-top", "help": "top ranks never mined (likely unjudged positives)"},
    )
    mine_depth: int = field(
        default=MINING["depth"].default,
        metadata={
            "flag": "--mine-depth",
            "help": "deepest rank mined (negatives come from below --skip-top)",
        },
    )
    query_max_length: int = field(
        default=64,
        metadata={"flag": "--query-max-length", "help": "query text tokens kept (prompt not counted)"},
    )
    passage_max_length: int = field(
        default=160,
        metadata={"flag": "--passage-max-length", "help": "passage text tokens kept (prompt not counted)"},
    )
    cross_device_negatives: bool = field(
        default=True,
        metadata={
            "flag": "--no-cross-device",
            "help": "score each query against the passages of every device",
        },
    )
    chunk_tokens: int = field(
        default=DEFAULT_CHUNK_TOKENS,
        metadata={
            "flag": "--chunk-tokens",
            "help": "tokens embedded with a graph at a time: bounds memory (about 2.4 MB a token for SmolLM2) "
            "whatever the batch size; 0: the whole batch at once",
        },
    )

    learning_rate: float = 1e-4
    per_device_train_batch_size: int = field(
        default=64, metadata={"flag": "--batch-size", "help": "queries (groups) a step and device"}
    )
    dataloader_drop_last: bool = True  # cross-device gathering needs equal batches on every rank

    def __post_init__(self) -> None:
        check_contrastive_settings(self.temperature, self.chunk_tokens, self.per_device_train_batch_size)
        super().__post_init__()

    @property
    def loss(self) -> InfoNCEConfig:
        return InfoNCEConfig(
            temperature=self.temperature,
            chunk_tokens=self.chunk_tokens,
            cross_device=self.cross_device_negatives,
        )

    @property
    def mining(self) -> MiningConfig:
        return MiningConfig(
            miner=self.miner,  # type: ignore[arg-type] - validated by MiningConfig
            negatives=self.negatives,
            skip_top=self.skip_top,
            depth=self.mine_depth,
            seed=self.seed,
            encoder=EncoderConfig(model=self.model, adapter=self.start_adapter),
        )

    @property
    def trained_lengths(self) -> TrainedLengths:
        return TrainedLengths(query=self.query_max_length, passage=self.passage_max_length)


def check_contrastive_settings(temperature: float, chunk_tokens: int, batch_size: int) -> None:
    """Refuses impossible loss settings before anything loads, with the flag to change."""
    from pydantic import ValidationError

    try:
        InfoNCEConfig(temperature=temperature, chunk_tokens=chunk_tokens)
    except ValidationError as error:
        first = error.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise InvalidInputError(f"{flag} {first['input']}: {first['msg']}.") from None
    if batch_size < 2:
        raise InvalidInputError(
            f"A contrastive batch of {batch_size} has no in-batch negative; pass a batch size of 2 or more."
        )


@dataclass(frozen=True)
class GroupSample:
    """What one training row holds: a query, then its positive followed by its K negatives.

    ``keys`` name where each passage came from (a document, or a text's hash); the query shares its
    positive's key, and a passage with the query's key is never used as its negative.
    """

    query: str
    passages: tuple[str, ...]
    keys: tuple[int, ...]


def text_key(text: str) -> int:
    """A 60-bit key equal for texts that differ only in case and whitespace."""
    return int(document_key(text)[:15], 16)


def draw_samples(groups: Sequence[TrainingGroup], negatives: int, seed: int) -> list[GroupSample]:
    """One sample per group: a random positive and K random negatives (repeated when fewer are known)."""
    samples = []
    for index, group in enumerate(groups):
        rng = random.Random(f"{seed}:{index}")
        positive = rng.choice(group.positives)
        if len(group.negatives) >= negatives:
            chosen = rng.sample(group.negatives, negatives)
        else:
            chosen = rng.choices(group.negatives, k=negatives)
        passages = (positive, *chosen)
        samples.append(GroupSample(group.query, passages, tuple(text_key(text) for text in passages)))
    return samples


class GroupCollator:
    """Samples -> queries and passages, each right-padded to its own longest row, with their keys."""

    def __init__(self, inputs: PromptInputs, query_max_length: int, passage_max_length: int) -> None:
        self.inputs = inputs
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length

    def __call__(self, samples: Sequence[GroupSample]) -> dict[str, torch.Tensor]:
        import torch

        queries = self.inputs([sample.query for sample in samples], "query", self.query_max_length)
        passages = self.inputs(
            [text for sample in samples for text in sample.passages], "passage", self.passage_max_length
        )
        batch = {f"query_{k}": v for k, v in collate(queries, self.inputs.pad_id).items()}
        batch |= {f"passage_{k}": v for k, v in collate(passages, self.inputs.pad_id).items()}
        batch["query_keys"] = torch.tensor([sample.keys[0] for sample in samples])
        batch["passage_keys"] = torch.tensor([key for sample in samples for key in sample.keys])
        return batch


@dataclass
class FinetuneResult:
    adapter: Path
    data: PairsSummary | None
    """What the groups were made of; None when the adapter was already complete."""
    training: dict[str, Any]


def start_record(directory: str) -> dict[str, Any]:
    """The adapter a stage continued; the shipped one by its name, not by where this machine installed it."""
    from llara_rag.encoding.adapter import DEFAULT, DEFAULT_ADAPTER, adapter_digest, read_adapter_info

    info = read_adapter_info(directory)
    return {
        "path": DEFAULT if Path(directory).resolve() == DEFAULT_ADAPTER.resolve() else str(directory),
        "digest": adapter_digest(directory),
        "stage": info.stage if info else None,
    }


def check_groups(samples: Sequence[GroupSample], world: int = 1) -> None:
    """In-batch negatives need at least two groups per device, from two different documents."""
    sources = len({sample.keys[0] for sample in samples})
    if len(samples) < 2 * world or sources < 2:
        raise InvalidInputError(
            f"{len(samples)} training groups from {sources} distinct document(s) are too few for in-batch "
            f"negatives; at least {2 * world} groups from 2 documents are needed."
        )


def train_contrastive(
    backbone: Backbone,
    model: PeftModel,
    samples: list[GroupSample],
    args: ContrastiveArguments,
    *,
    resume: bool,
    evaluator: StepEvaluator | None = None,
) -> AdapterTrainer:
    """Trains ``model`` with InfoNCE on ``samples``; a corpus smaller than a batch trains on smaller batches."""
    world = max(1, args.world_size)
    check_groups(samples, world)
    if len(samples) < args.per_device_train_batch_size * world:
        logger.warning(
            "Only %d training groups: training on batches of %d instead of %d (fewer in-batch negatives).",
            len(samples),
            len(samples) // world,
            args.per_device_train_batch_size,
        )
        args.per_device_train_batch_size = len(samples) // world
    collator = GroupCollator(
        PromptInputs(backbone.tokenizer, backbone.special_ids, lowercase=args.text_lowercase),
        args.query_max_length,
        args.passage_max_length,
    )
    loss = CachedInfoNCE(args.loss, group_size=len(samples[0].passages))
    return run_stage(backbone, model, loss, samples, collator, args, resume=resume, evaluator=evaluator)


def inputs_record(args: ContrastiveArguments) -> dict[str, Any]:
    """How the rows were made, beside the loss's own settings: negatives and text lengths."""
    return {
        "negatives": args.negatives,
        "in_batch_negatives": True,
        "query_max_length": args.query_max_length,
        "passage_max_length": args.passage_max_length,
    }


def source_digest(source: str | Path) -> str:
    """What the training data was: a hash of the file, or of a BEIR folder's corpus, queries and qrels."""
    import hashlib

    path = Path(source).expanduser()
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else []
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def finetune(
    source: str | Path,
    adapter_dir: str | Path,
    args: ContrastiveArguments,
    *,
    resume: bool = True,
    overwrite: bool = False,
    evaluator: StepEvaluator | None = None,
) -> FinetuneResult:
    """Fine-tunes ``args.model`` (+ ``args.start_adapter``) on the groups of ``source``; writes ``adapter_dir``.

    A finished run re-run returns the adapter it wrote; an adapter of other settings is replaced only
    with ``overwrite``, which trains from scratch. ``evaluator`` scores the model as it trains (``eval_*``).
    """
    run = start_run(
        args, adapter_dir, {"source": source_digest(source)}, resume=resume, overwrite=overwrite, source=source
    )
    if run.finished:
        return FinetuneResult(adapter=Path(adapter_dir), data=None, training=run.finished.training)
    start, recipe, resume = run.start, run.recipe, run.resume
    started = time.perf_counter()
    # Before the backbone loads: a dense miner loads (and frees) its own model. Rank 0 first, so the other
    # ranks of a distributed run read its cached corpus vectors instead of encoding the corpus again.
    with args.main_process_first(desc="mining hard negatives"):
        groups, data = load_groups(source, args.split, args.mining)
    backbone = load_backbone(args.model, device="cpu")
    model = continued_lora_model(backbone, start, args) if start else lora_model(backbone, args)
    samples = draw_samples(groups, args.negatives, args.seed)
    logger.info(
        "Fine-tuning on %d groups of 1 query + 1 positive + %d negatives, %d groups a step per device",
        len(samples),
        args.negatives,
        args.per_device_train_batch_size,
    )
    trainer = train_contrastive(backbone, model, samples, args, resume=resume, evaluator=evaluator)
    training = {
        "recipe": recipe,
        **trainer.summary(),
        "inputs": inputs_record(args),
        "mining": {"miner": args.miner, "skip_top": args.skip_top, "depth": args.mine_depth},
        "data": data.as_dict(),
        "continued_from": start_record(start) if start else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    start_text = f" continuing adapter `{args.start_adapter}`" if start else ""
    split = f" ({data.split} split)" if data.split else ""
    description = (
        f"Supervised contrastive (InfoNCE, τ={args.temperature}) fine-tuning{start_text} on {data.groups} labelled "
        f"queries of `{source}`{split}, each with 1 positive and {args.negatives} hard negatives ({args.miner})."
    )
    adapter = trainer.write_adapter(
        adapter_dir,
        stage="contrastive",
        training=training,
        description=description,
        lengths=args.trained_lengths,
    )
    return FinetuneResult(adapter=adapter, data=data, training=training)
