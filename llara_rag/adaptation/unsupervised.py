"""The unsupervised LLaRA stage: a user's documents in, an adapter that retrieves better on them out.

``adapt(DOCS, OUTPUT, AdaptationArguments(...))`` reads the documents into (window, next window)
records, trains LoRA (+ the special-token rows) on the one-pass EBAE/EBAR objective with a
``transformers.Trainer``, fits the domain whitening (:mod:`llara_rag.whitening`) on a sample of the
windows, and writes an adapter directory that ``LLaRAEncoder(adapter=...)`` loads.
Checkpoints go to ``args.output_dir`` (the CLI uses ``OUTPUT.checkpoints``); rerunning the same command
after an interruption resumes from the last one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llara_rag.adaptation.corpus import CorpusSummary, build_records, check_source, write_records
from llara_rag.adaptation.objective import (
    ExampleBuilder,
    ObjectiveConfig,
    collate_examples,
    compute_objective,
)
from llara_rag.adaptation.trainer import (
    AdapterArguments,
    AdapterTrainer,
    StageLoss,
    last_checkpoint,
    lora_model,
)
from llara_rag.adapter import apply_adapter
from llara_rag.backbone import load_backbone
from llara_rag.encoder import EncoderConfig, LLaRAEncoder
from llara_rag.errors import InvalidInputError
from llara_rag.whitening import default_dimensions, fit_whitening

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
"""The training windows, saved beside the checkpoints so what the adapter learnt from can be inspected."""


@dataclass
class AdaptationArguments(AdapterArguments):
    """Training arguments of the unsupervised stage: windows and loss weights on top of the shared ones."""

    window_tokens: int = field(default=128, metadata={"help": "tokens per window (text and EBAR target)"})
    lm_weight: float = field(default=1.0, metadata={"help": "weight of the next-token LM loss"})
    bow_weight: float = field(default=1.0, metadata={"help": "weight of (EBAE + EBAR) / 2 (reference: 0.1)"})
    remove_stopwords: bool = field(
        default=True, metadata={"help": "drop stop words from bag-of-words targets"}
    )
    target_weighting: str = field(
        default="uniform",
        metadata={
            "help": "bag-of-words targets count equally ('uniform') or by IDF over the windows ('idf')"
        },
    )
    whitening_dims: int = field(
        default=-1,
        metadata={
            "help": "directions kept by the domain whitening fitted after training on the windows "
            "(-1: a quarter of the hidden size, 0: no whitening)"
        },
    )
    whitening_samples: int = field(default=512, metadata={"help": "windows the whitening is fitted on"})

    def __post_init__(self) -> None:
        try:
            ObjectiveConfig.model_validate(self._objective_values())
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise InvalidInputError(f"Invalid adaptation objective ({problems}).") from None
        super().__post_init__()

    def _objective_values(self) -> dict[str, Any]:
        return {
            "lm_weight": self.lm_weight,
            "bow_weight": self.bow_weight,
            "remove_stopwords": self.remove_stopwords,
            "target_weighting": self.target_weighting,
        }

    @property
    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(**self._objective_values())


class AdaptationTrainer(AdapterTrainer):
    """Trains on the one-pass LM + EBAE + EBAR objective and logs its parts and the embedding health."""

    args: AdaptationArguments

    def stage_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> StageLoss:
        output = compute_objective(model, inputs, self.args.objective)
        metrics = {"lm": output.lm, "ebae": output.ebae, "ebar": output.ebar}
        return StageLoss(output.loss, metrics, output.passage_embeddings)


@dataclass
class AdaptationResult:
    adapter: Path
    corpus: CorpusSummary
    training: dict[str, Any]


def _probe_seconds(trainer: AdaptationTrainer) -> float:
    """Times a forward and backward pass on a real batch, for the estimate shown before training.

    The second of two passes is timed: the first pays one-off costs (allocation, kernel selection)
    that made a CPU estimate 1.7 times the real step time.
    """
    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))
    for _ in range(2):
        start = time.perf_counter()
        output = compute_objective(model, batch, trainer.args.objective)
        output.loss.backward()
        model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def whitening_step(
    args: AdaptationArguments, texts: list[str], hidden_size: int
) -> Callable[[Path], None] | None:
    """Returns the step that whitens the staged adapter: loads it as users will, then fits on ``texts``.

    Built before training, so an impossible ``whitening_dims`` is refused before the hours of training.
    """
    if args.whitening_dims == 0:
        return None
    dimensions = args.whitening_dims if args.whitening_dims > 0 else default_dimensions(hidden_size)
    if dimensions > hidden_size:
        raise InvalidInputError(
            f"--whitening-dims {dimensions} exceeds the {hidden_size} dimensions of {args.model}; pass at "
            f"most {hidden_size}, or 0 for no whitening."
        )

    def finish(staging: Path) -> None:
        backbone = load_backbone(args.model, device=args.device.type)
        apply_adapter(backbone, staging)
        encoder = LLaRAEncoder(EncoderConfig(model=args.model, adapter=str(staging)), backbone=backbone)
        whitening = fit_whitening(encoder, texts, dimensions, samples=args.whitening_samples, seed=args.seed)
        if whitening:
            whitening.save(staging)

    return finish


def planned_steps(records: int, args: AdaptationArguments) -> int:
    if args.max_steps > 0:
        return args.max_steps
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    return max(1, int(-(-records * args.num_train_epochs // per_step)))


def adapt(
    source: str | Path, adapter_dir: str | Path, args: AdaptationArguments, *, resume: bool = True
) -> AdaptationResult:
    """Adapts ``args.model`` to the documents in ``source`` and writes the adapter to ``adapter_dir``."""
    check_source(source)
    started, cpu_started = time.perf_counter(), time.process_time()
    backbone = load_backbone(args.model, device="cpu")
    records, corpus = build_records(source, backbone.tokenizer, args.window_tokens)
    finish = whitening_step(args, [record.text for record in records], backbone.hidden_size)
    builder = ExampleBuilder(
        backbone.tokenizer,
        backbone.special_ids,
        max_text_tokens=args.window_tokens,
        remove_stopwords=args.remove_stopwords,
    )
    if args.target_weighting == "idf":
        builder.fit_idf(record.text for record in records)
    examples = [builder(record) for record in records]
    if args.should_save:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        write_records(records, Path(args.output_dir) / RECORDS_FILE)
    pad_id = backbone.tokenizer.pad_token_id
    pad_id = pad_id if pad_id is not None else backbone.tokenizer.eos_token_id or 0
    trainer = AdaptationTrainer(
        backbone=backbone,
        model=lora_model(backbone, args),
        args=args,
        train_dataset=examples,
        data_collator=partial(collate_examples, pad_id=pad_id),
        processing_class=backbone.tokenizer,
    )
    checkpoint = last_checkpoint(args, resume)
    steps = planned_steps(len(examples), args)
    if not checkpoint:
        seconds = _probe_seconds(trainer)
        logger.info(
            "Training %d steps of %d records (%d records, %.2f epochs): about %.0f minutes at %.1f s a step",
            steps,
            args.per_device_train_batch_size * args.gradient_accumulation_steps,
            len(examples),
            steps * args.per_device_train_batch_size * args.gradient_accumulation_steps / len(examples),
            steps * seconds * args.gradient_accumulation_steps / 60,
            seconds * args.gradient_accumulation_steps,
        )
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.raise_if_collapsed("Try a lower --lr, a higher --lm-weight or a lower --bow-weight.")
    training = {
        **trainer.summary(),
        "objective": args.objective.model_dump(),
        "window_tokens": args.window_tokens,
        "corpus": {"source": str(source), **corpus.as_dict()},
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
    }
    description = (
        f"Unsupervised LLaRA (EBAE + EBAR) adaptation on {corpus.records} windows of {args.window_tokens} tokens "
        f"from {corpus.documents} documents of `{source}`."
    )
    adapter = trainer.write_adapter(
        adapter_dir,
        stage="adaptation",
        training=training,
        description=description,
        finish=finish,
    )
    return AdaptationResult(adapter=adapter, corpus=corpus, training=training)
