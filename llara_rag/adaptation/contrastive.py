"""The supervised LLaRA stage: contrastive fine-tuning on labelled queries with hard negatives.

``finetune(PAIRS, OUTPUT, ContrastiveArguments(...))`` builds groups of one query, one positive and K
hard negatives (:mod:`llara_rag.adaptation.pairs`), embeds queries and passages exactly as the encoder
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
from typing import TYPE_CHECKING, Any

from llara_rag.adaptation.pairs import MiningConfig, PairsSummary, TrainingGroup, load_groups
from llara_rag.adaptation.trainer import (
    AdapterArguments,
    AdapterTrainer,
    StageLoss,
    continued_lora_model,
    last_checkpoint,
    lora_model,
)
from llara_rag.backbone import load_backbone
from llara_rag.encoder import EncoderConfig, PromptInputs, collate, pool_special
from llara_rag.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ACCURACY_METRIC = "accuracy"
"""Logged share of queries whose positive scores highest among all the passages they are compared with."""


@dataclass
class ContrastiveArguments(AdapterArguments):
    """Training arguments of the supervised stage; the defaults follow the reference where one CPU allows."""

    start_adapter: str | None = field(
        default=None,
        metadata={"help": "an adapter (e.g. from `llara-rag adapt`) to keep training; default: fresh LoRA"},
    )
    split: str = field(default="train", metadata={"help": "qrels/<split>.tsv of a BEIR folder to train on"})
    temperature: float = field(default=0.01, metadata={"help": "InfoNCE temperature τ over q·p"})
    negatives: int = field(default=15, metadata={"help": "hard negatives per group (group = 1 positive + K)"})
    miner: str = field(default="bm25", metadata={"help": "bm25, dense (the starting encoder) or none"})
    skip_top: int = field(default=10, metadata={"help": "top ranks never mined (likely unjudged positives)"})
    mine_depth: int = field(
        default=100, metadata={"help": "negatives are drawn from ranks skip_top+1..depth"}
    )
    query_max_length: int = field(
        default=64, metadata={"help": "query text tokens kept (prompt not counted)"}
    )
    passage_max_length: int = field(
        default=160, metadata={"help": "passage text tokens kept (prompt not counted)"}
    )
    cross_device_negatives: bool = field(
        default=True, metadata={"help": "score each query against the passages of every device"}
    )

    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 8
    dataloader_drop_last: bool = True  # cross-device gathering needs equal batches on every rank

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


@dataclass(frozen=True)
class GroupSample:
    """What one training row holds: a query, then its positive followed by its K negatives."""

    query: str
    passages: tuple[str, ...]


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
        samples.append(GroupSample(group.query, (positive, *chosen)))
    return samples


class GroupCollator:
    """Samples -> one right-padded batch: all queries first, then each group's passages in order."""

    def __init__(self, inputs: PromptInputs, query_max_length: int, passage_max_length: int) -> None:
        self.inputs = inputs
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length

    def __call__(self, samples: Sequence[GroupSample]) -> dict[str, torch.Tensor]:
        queries = self.inputs([sample.query for sample in samples], "query", self.query_max_length)
        passages = self.inputs(
            [text for sample in samples for text in sample.passages], "passage", self.passage_max_length
        )
        return collate(queries + passages, self.inputs.pad_id)


def embed_batch(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2-normalised mean of the final states at the 8 special positions: the encoder's vectors, with grads.

    The call goes through the (possibly DDP-wrapped) model itself so distributed gradients are reduced;
    ``logits_to_keep=1`` spares the vocabulary-sized logits nobody reads.
    """
    import torch.nn.functional as F

    outputs = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        output_hidden_states=True,
        use_cache=False,
        logits_to_keep=1,
    )
    return F.normalize(pool_special(outputs.hidden_states[-1], batch["attention_mask"]), dim=-1)


def info_nce(
    queries: torch.Tensor,
    passages: torch.Tensor,
    group_size: int,
    temperature: float,
    *,
    cross_device: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of ``queries`` (n, d) against ``passages`` (n * group_size, d), and the top-1 accuracy.

    Query i's positive is passage ``i * group_size``; the rest of its group and every other passage are
    its negatives. With ``cross_device`` under an initialised process group, passages of all ranks are
    gathered with an autograd-aware all-gather, so gradients reach the rank that embedded them.
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    offset = 0
    if cross_device and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather

        offset = dist.get_rank() * passages.shape[0]
        passages = torch.cat(all_gather(passages))
    scores = queries.float() @ passages.float().T / temperature
    targets = offset + torch.arange(queries.shape[0], device=queries.device) * group_size
    loss = F.cross_entropy(scores, targets)
    accuracy = (scores.argmax(dim=1) == targets).float().mean()
    return loss, accuracy.detach()


class ContrastiveTrainer(AdapterTrainer):
    """Trains on InfoNCE over one forward pass of queries and passages; logs accuracy and embedding health."""

    args: ContrastiveArguments

    def stage_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> StageLoss:
        group_size = 1 + self.args.negatives
        embeddings = embed_batch(model, inputs)
        count = embeddings.shape[0] // (1 + group_size)
        queries, passages = embeddings[:count], embeddings[count:]
        loss, accuracy = info_nce(
            queries,
            passages,
            group_size,
            self.args.temperature,
            cross_device=self.args.cross_device_negatives,
        )
        return StageLoss(loss, {ACCURACY_METRIC: accuracy}, passages)


@dataclass
class FinetuneResult:
    adapter: Path
    data: PairsSummary
    training: dict[str, Any]


def _start_record(directory: str) -> dict[str, Any]:
    from llara_rag.adapter import adapter_digest, read_adapter_info

    info = read_adapter_info(directory)
    return {
        "path": str(Path(directory).resolve()),
        "digest": adapter_digest(directory),
        "stage": info.stage if info else None,
    }


def finetune(
    source: str | Path, adapter_dir: str | Path, args: ContrastiveArguments, *, resume: bool = True
) -> FinetuneResult:
    """Fine-tunes ``args.model`` (+ ``args.start_adapter``) on the groups of ``source``; writes ``adapter_dir``."""
    started = time.perf_counter()
    # Before the backbone loads: a dense miner loads (and frees) its own model. Rank 0 first, so the other
    # ranks of a distributed run read its cached corpus vectors instead of encoding the corpus again.
    with args.main_process_first(desc="mining hard negatives"):
        groups, data = load_groups(source, args.split, args.mining)
    backbone = load_backbone(args.model, device="cpu")
    if args.start_adapter:
        model = continued_lora_model(backbone, args.start_adapter, args)
    else:
        model = lora_model(backbone, args)
    inputs = PromptInputs(backbone.tokenizer, backbone.special_ids)
    samples = draw_samples(groups, args.negatives, args.seed)
    batch = args.per_device_train_batch_size * max(1, args.world_size)
    if len(samples) < batch:
        raise InvalidInputError(
            f"{source} gives {len(samples)} training groups, fewer than one batch of {batch}; lower --batch-size."
        )
    trainer = ContrastiveTrainer(
        backbone=backbone,
        model=model,
        args=args,
        train_dataset=samples,
        data_collator=GroupCollator(inputs, args.query_max_length, args.passage_max_length),
        processing_class=backbone.tokenizer,
    )
    checkpoint = last_checkpoint(args, resume)
    logger.info(
        "Fine-tuning on %d groups of 1 query + 1 positive + %d negatives, %d groups a step per device",
        len(samples),
        args.negatives,
        args.per_device_train_batch_size,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.raise_if_collapsed("Try a lower --lr or a higher --temperature.")
    training = {
        **trainer.summary(),
        "objective": {
            "loss": "InfoNCE",
            "temperature": args.temperature,
            "negatives": args.negatives,
            "in_batch_negatives": True,
            "cross_device_negatives": args.cross_device_negatives,
        },
        "query_max_length": args.query_max_length,
        "passage_max_length": args.passage_max_length,
        "mining": {"miner": args.miner, "skip_top": args.skip_top, "depth": args.mine_depth},
        "data": data.as_dict(),
        "continued_from": _start_record(args.start_adapter) if args.start_adapter else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    start = f" continuing adapter `{args.start_adapter}`" if args.start_adapter else ""
    split = f" ({data.split} split)" if data.split else ""
    description = (
        f"Supervised contrastive (InfoNCE, τ={args.temperature}) fine-tuning{start} on {data.groups} labelled "
        f"queries of `{source}`{split}, each with 1 positive and {args.negatives} hard negatives ({args.miner})."
    )
    adapter = trainer.write_adapter(
        adapter_dir, stage="contrastive", training=training, description=description
    )
    return FinetuneResult(adapter=adapter, data=data, training=training)
