"""The contrastive stage, which ``finetune`` runs on labelled groups and ``adapt`` on label-free pairs.

It embeds queries and passages exactly as the encoder serves them (same prompt ids, same pooling) and
minimises InfoNCE over ``q·p / τ``: each query must pick its positive among its own negatives, every other
group's passages in the batch and, when run distributed, every other device's passages too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from llara_rag.encoding.adapter import TrainedLengths
from llara_rag.encoding.backbone import load_backbone
from llara_rag.encoding.encoder import EncoderConfig, PromptInputs
from llara_rag.errors import InvalidInputError
from llara_rag.training.data.groups import GroupCollator, GroupSample, check_groups
from llara_rag.training.data.pairs import Miner, MiningConfig
from llara_rag.training.losses.info_nce import DEFAULT_CHUNK_TOKENS, CachedInfoNCE, InfoNCEConfig
from llara_rag.training.trainer import (
    AdapterTrainer,
    StageArguments,
    StepEvaluator,
    continued_lora_model,
    lora_model,
    run_stage,
)

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


def train_contrastive(
    samples: list[GroupSample],
    args: ContrastiveArguments,
    *,
    start: str | Path | None,
    resume: bool,
    evaluator: StepEvaluator | None = None,
) -> AdapterTrainer:
    """Trains ``args.model`` with InfoNCE on ``samples``, continuing ``start``'s LoRA or opening a fresh one.

    Both recipes run the stage through here: ``finetune`` on labelled groups, ``adapt`` on its pairs. A
    corpus smaller than a batch trains on smaller batches.
    """
    backbone = load_backbone(args.model, device="cpu")
    model = continued_lora_model(backbone, start, args) if start else lora_model(backbone, args)
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


def start_record(directory: str) -> dict[str, Any]:
    """The adapter a stage continued; the shipped one by its name, not by where this machine installed it."""
    from llara_rag.encoding.adapter import adapter_digest, adapter_name, read_adapter_info

    info = read_adapter_info(directory)
    return {
        "path": adapter_name(str(directory)),
        "digest": adapter_digest(directory),
        "stage": info.stage if info else None,
    }
