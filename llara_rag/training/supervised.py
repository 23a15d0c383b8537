"""``finetune``: the contrastive stage on labelled queries with hard negatives.

``finetune(PAIRS, OUTPUT, ContrastiveArguments(...))`` builds groups of one query, one positive and K
hard negatives (:mod:`llara_rag.training.data.pairs`) and trains them with the contrastive stage
(:mod:`llara_rag.training.contrastive`). The result is an adapter directory like ``adapt``'s, loaded by
the encoder, the store and every integration the same way.

Given ``start_adapter`` (an adaptation adapter), training continues that LoRA rather than merging it and
stacking a fresh one: the output stays one LoRA relative to the base backbone, self-contained, with the
special-token rows the adaptation learnt still trainable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llara_rag.training.contrastive import (
    ContrastiveArguments,
    inputs_record,
    start_record,
    train_contrastive,
)
from llara_rag.training.data.groups import draw_samples
from llara_rag.training.data.pairs import PairsSummary, load_groups
from llara_rag.training.trainer import StepEvaluator, start_run

logger = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    adapter: Path
    data: PairsSummary | None
    """What the groups were made of; None when the adapter was already complete."""
    training: dict[str, Any]


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
        args,
        adapter_dir,
        {"source": source_digest(source)},
        resume=resume,
        overwrite=overwrite,
        source=source,
    )
    if run.finished:
        return FinetuneResult(adapter=Path(adapter_dir), data=None, training=run.finished.training)
    start, recipe, resume = run.start, run.recipe, run.resume
    started = time.perf_counter()
    # Before the backbone loads: a dense miner loads (and frees) its own model. Rank 0 first, so the other
    # ranks of a distributed run read its cached corpus vectors instead of encoding the corpus again.
    with args.main_process_first(desc="mining hard negatives"):
        groups, data = load_groups(source, args.split, args.mining)
    samples = draw_samples(groups, args.negatives, args.seed)
    logger.info(
        "Fine-tuning on %d groups of 1 query + 1 positive + %d negatives, %d groups a step per device",
        len(samples),
        args.negatives,
        args.per_device_train_batch_size,
    )
    trainer = train_contrastive(samples, args, start=start, resume=resume, evaluator=evaluator)
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
