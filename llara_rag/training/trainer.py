"""The one trainer every llara-rag stage runs on: LoRA setup, the collapse guard, checkpoints, adapter output.

A stage (the unsupervised EBAE/EBAR adaptation, the label-free and the supervised contrastive stages)
is a loss object (:mod:`llara_rag.training.losses.base`), a dataset and a collator, handed to
:func:`run_stage`; its arguments subclass :class:`StageArguments`. Because this is a plain
``transformers.Trainer``, the same code runs on one CPU, under ``torchrun`` / ``accelerate launch`` and
with DeepSpeed (``--deepspeed ds.json``), with checkpoints and resume.

The adapter directory is written to a hidden staging folder and renamed into place only when
complete, so an interrupted run never leaves a directory that loads as an adapter.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from transformers import Trainer, TrainerCallback, TrainingArguments

from llara_rag.encoding.adapter import (
    LLARA_CONFIG_FILE,
    PEFT_FILES,
    AdapterDirectory,
    AdapterInfo,
    TrainedLengths,
    load_peft,
    peft_wrapping,
    write_adapter_info,
    write_model_card,
)
from llara_rag.encoding.backbone import DEFAULT_MODEL, Backbone
from llara_rag.encoding.compilation import compile_repeated_layers
from llara_rag.encoding.precision import warn_if_emulated_bf16
from llara_rag.errors import AdapterError, EmbeddingCollapseError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import TrainerControl, TrainerState

    from llara_rag.encoding.prompts import Side
    from llara_rag.training.losses.base import TrainingLoss

logger = logging.getLogger(__name__)

COSINE_METRIC = "embedding_cosine"
"""Logged mean off-diagonal cosine of the in-batch passage embeddings; near 1 means collapse."""

TOKEN_ROWS = "trainable_tokens_delta"
"""What peft's ``trainable_token_indices`` names the trainable special-token rows."""
SPECIAL_TOKENS_GROUP = "special_tokens"


SCHEDULE_FIELDS = (
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
    "warmup_steps",
    "weight_decay",
    "lr_scheduler_type",
)
"""The TrainingArguments fields that change what is learnt (and so belong to a run's recipe)."""
RUNTIME_FIELDS = ("chunk_tokens", "compile_layers")
"""Settings of memory and speed alone: changing them does not make a finished run a different one."""
CHECKPOINT_SUBFOLDERS = ("contrastive", "supervised", "ebae-ebar-adapter", "contrastive-adapter")
"""What a multi-stage run (``adapt``) keeps beside its checkpoints: each later stage's checkpoints, and each
finished stage's adapter that a later stage continued."""


@dataclass
class StageArguments(TrainingArguments):
    """``TrainingArguments`` with the backbone, LoRA and collapse-guard settings; defaults suit one CPU.

    A field with a ``flag`` in its metadata is a `llara-rag adapt`/`finetune` option of that name, with
    this default and help (:mod:`llara_rag.cli.flags`); subclasses change defaults alone.
    """

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"flag": ("--base", "--model"), "help": "backbone: embedded alias, .gguf, folder or Hub id"},
    )
    start_adapter: str | None = field(
        default=None,
        metadata={
            "flag": "--adapter",
            "help": "an adapter to keep training: 'default' (the one shipped for the default backbone) or a "
            "directory, e.g. `llara-rag adapt`'s (none: a fresh LoRA on the bare backbone)",
        },
    )
    lowercase: str | None = field(
        default=None,
        metadata={
            "flag": "--lowercase",
            "choices": ("on", "off"),
            "help": "train on lower-cased text, so the adapter is served lower-cased and capitals carry no weight "
            "(default: as the adapter continued was trained; off for a fresh LoRA)",
        },
    )
    lora_r: int = field(default=16, metadata={"flag": "--lora-r", "help": "LoRA rank of a fresh adapter"})
    lora_alpha: int = field(
        default=32,
        metadata={"flag": "--lora-alpha", "help": "LoRA alpha of a fresh adapter (scale = alpha / r)"},
    )
    lora_dropout: float = field(
        default=0.0,
        metadata={"help": "LoRA dropout (0 by default: on a CPU 0.05 made training steps 1.3-1.8x slower)"},
    )
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "peft target_modules: all-linear = every attention and MLP projection"},
    )
    train_special_tokens: bool = field(
        default=True, metadata={"help": "train the <s1>..<s16> embedding rows (they start untrained)"}
    )
    special_tokens_lr_scale: float = field(
        default=1.0,
        metadata={
            "flag": "--special-tokens-lr-scale",
            "help": "learning rate of the <s1>..<s16> rows, as a multiple of --lr",
        },
    )
    collapse_threshold: float = field(
        default=0.99,
        metadata={"help": "in-batch mean cosine at or above which embeddings count as collapsed"},
    )
    collapse_patience: int = field(default=3, metadata={"help": "consecutive collapsed logs before acting"})
    stop_on_collapse: bool = field(
        default=True,
        metadata={
            "flag": "--allow-collapse",
            "help": "stop (and write no adapter) when the embeddings collapse",
        },
    )

    max_steps: int = field(
        default=-1, metadata={"flag": "--max-steps", "help": "optimizer steps (-1: --epochs decides)"}
    )
    num_train_epochs: float = field(
        default=1.0, metadata={"flag": "--epochs", "help": "passes over the data"}
    )
    learning_rate: float = field(default=2e-4, metadata={"flag": "--lr", "help": "peak learning rate"})
    per_device_train_batch_size: int = field(
        default=8, metadata={"flag": "--batch-size", "help": "rows a step and device"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"flag": "--grad-accum", "help": "gradient accumulation steps"}
    )
    activation_checkpointing: bool | None = field(
        default=False, metadata={"flag": "--gradient-checkpointing", "help": "trade compute for memory"}
    )
    compile_layers: bool = field(
        default=False,
        metadata={
            "flag": "--compile",
            "help": "compile the backbone's decoder layers with torch.compile (about 30 s at the first step): "
            "a quarter less peak memory, steps 0-22%% faster on a 2-core CPU (benchmarks/results/train_speed.md)",
        },
    )
    save_steps: float = field(
        default=50, metadata={"flag": "--save-steps", "help": "checkpoint every N steps"}
    )
    logging_steps: float = field(
        default=10, metadata={"flag": "--logging-steps", "help": "log every N steps"}
    )
    deepspeed: dict | str | None = field(
        default=None, metadata={"flag": "--deepspeed", "help": "a DeepSpeed config JSON (multi-GPU runs)"}
    )
    bf16: bool = field(
        default=False,
        metadata={
            "flag": "--bf16",
            "help": "bf16 mixed precision: GPUs, and CPUs with native bf16 (AVX512_BF16 or AMX), where it is "
            "faster than fp32 and measured as good (docs/adapt.md); emulated, slower, elsewhere",
        },
    )
    seed: int = field(default=42, metadata={"flag": "--seed", "help": "seed of sampling and initialisation"})
    report_to: None | str | list[str] = field(
        default="none",
        metadata={
            "flag": "--report-to",
            "help": "where the Trainer also logs: tensorboard, wandb, mlflow, ... comma-separated",
        },
    )
    warmup_steps: float = 0.05
    logging_first_step: bool = True
    save_total_limit: int | None = 2
    remove_unused_columns: bool = False
    activation_checkpointing_kwargs: dict[str, Any] | str | None = field(
        default_factory=lambda: {"use_reentrant": False}
    )

    @property
    def text_lowercase(self) -> bool:
        """``lowercase`` resolved: as asked, else as the adapter this stage continues was trained."""
        from llara_rag.encoding.adapter import resolve_adapter
        from llara_rag.encoding.encoder import trained_lowercase

        if self.lowercase is not None:
            return self.lowercase == "on"
        return trained_lowercase(
            resolve_adapter(self.start_adapter, default_backbone=self.model == DEFAULT_MODEL)
        )

    def recipe(self) -> dict[str, Any]:
        """What decides the trained weights: the stage's own settings and the Trainer's schedule, not its logging.

        Recorded with the adapter, so re-running a finished command is recognised and changes nothing.
        """
        import json
        from dataclasses import fields

        own = (
            {f.name for f in fields(self)} - {f.name for f in fields(TrainingArguments)} - set(RUNTIME_FIELDS)
        )
        values = {name: getattr(self, name) for name in sorted(own | set(SCHEDULE_FIELDS))}
        return json.loads(json.dumps(values, default=str))

    def __post_init__(self) -> None:
        if self.special_tokens_lr_scale < 0:
            raise InvalidInputError(
                f"--special-tokens-lr-scale {self.special_tokens_lr_scale} is negative; pass 0 to freeze the "
                "special-token rows or a positive multiple of --lr."
            )
        if isinstance(self.report_to, str) and "," in self.report_to:
            self.report_to = [name.strip() for name in self.report_to.split(",") if name.strip()]
        import torch

        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = (
                False  # it only speeds copies to an accelerator; torch warns without one
            )
            if self.bf16:  # the Trainer runs CPU autocast only when told the CPU is meant
                self.use_cpu = True
                warn_if_emulated_bf16("--bf16")
        super().__post_init__()


def lora_model(backbone: Backbone, args: StageArguments) -> PeftModel:
    """Wraps the backbone in LoRA; the special-token rows train through peft's ``trainable_token_indices``.

    Only those 16 rows are stored in the adapter (megabytes, not the whole vocabulary matrix), and
    peft keeps tied input/output embeddings (SmolLM2) tied. Seeded here, not only by the Trainer
    (which starts after the model exists), so the same arguments give the same LoRA initialisation.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules
        if args.lora_target_modules == "all-linear"
        else [name.strip() for name in args.lora_target_modules.split(",")],
        trainable_token_indices=list(backbone.special_ids.all) if args.train_special_tokens else None,
        task_type="CAUSAL_LM",
    )
    backbone.network.train()
    set_seed(args.seed)
    with peft_wrapping():
        model = get_peft_model(backbone.network, config)
    if args.activation_checkpointing:
        model.enable_input_require_grads()
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA: %d trainable parameters of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    return model


def continued_lora_model(backbone: Backbone, directory: str | Path, args: StageArguments) -> PeftModel:
    """Loads an earlier stage's adapter onto the backbone to keep training it, LoRA shape and all.

    Training the same LoRA on (rather than merging it and stacking a fresh one) keeps the result one
    adapter relative to the base backbone, which every loader already handles; ``args``' LoRA shape is
    then ignored in favour of the adapter's own.
    """
    backbone.network.train()
    model = load_peft(backbone, AdapterDirectory(directory), trainable=True)
    if args.activation_checkpointing:
        model.enable_input_require_grads()
    lora = model.peft_config["default"]
    trainable, total = model.get_nb_trainable_parameters()
    logger.info(
        "Continuing adapter %s (LoRA r=%d, alpha=%d): %d trainable parameters of %d (%.2f%%)",
        directory,
        lora.r,
        lora.lora_alpha,
        trainable,
        total,
        100 * trainable / total,
    )
    return model


ADAPTER_MARKERS = (LLARA_CONFIG_FILE, PEFT_FILES[0])
"""A folder holding either is an adapter, which a new run may replace."""


@dataclass(frozen=True)
class Run:
    """Where a stage command starts: the adapter it continues, its recipe, and whether it resumes."""

    start: str | None
    recipe: dict[str, Any]
    resume: bool
    finished: AdapterInfo | None
    """The adapter already written with this recipe: nothing is left to do."""


def start_run(
    args: StageArguments,
    adapter_dir: str | Path,
    data: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    source: str | Path | None = None,
) -> Run:
    """Resolves the adapter ``args`` continue and the run's recipe (``data``: digests of what it trains on).

    A finished adapter of the same recipe is returned as such; ``overwrite`` or ``resume=False`` clears the
    checkpoints of an earlier run, so training starts from scratch. ``adapter_dir`` is checked against
    ``source`` (what the run trains on) first: :func:`check_output`.
    """
    from llara_rag.encoding.adapter import adapter_digest, resolve_adapter

    check_output(adapter_dir, source)

    start = resolve_adapter(args.start_adapter, default_backbone=args.model == DEFAULT_MODEL)
    recipe = {**data, **args.recipe(), "start_adapter_digest": adapter_digest(start) if start else None}
    finished = None if overwrite else finished_adapter(adapter_dir, recipe)
    if finished is None and (overwrite or not resume):
        clear_checkpoints(args.output_dir)
        resume = False
    return Run(start, recipe, resume, finished)


def replaceable(directory: Path) -> bool:
    """Whether a new adapter may take ``directory``'s place: it is absent, empty, or an adapter itself."""
    if not directory.exists():
        return True
    if not directory.is_dir():
        return False
    return not any(directory.iterdir()) or any((directory / name).is_file() for name in ADAPTER_MARKERS)


def check_output(adapter_dir: str | Path, source: str | Path | None) -> None:
    """Refuses an output that is, holds or lies inside the documents trained on, and one that holds
    anything but an adapter: a run replaces its output whole, and ``--overwrite`` must never delete a
    user's files (the adapter's own files would also become training text on the next run)."""
    target = Path(adapter_dir).expanduser().resolve()
    if source is not None:
        origin = Path(source).expanduser().resolve()
        if target == origin or origin.is_relative_to(target):
            raise InvalidInputError(
                f"--output {adapter_dir} is or holds the documents trained on ({source}); the adapter "
                "replaces its folder whole, so choose a new folder outside them, e.g. --output my-adapter."
            )
        if origin.is_dir() and target.is_relative_to(origin):
            raise InvalidInputError(
                f"--output {adapter_dir} is inside the documents folder {source}: its files would be read "
                "as documents on the next run; choose a folder outside it, e.g. --output my-adapter."
            )
    if not replaceable(target):
        what = "a file" if not target.is_dir() else "a folder of other files"
        raise InvalidInputError(
            f"--output {adapter_dir} is {what}, not a llara-rag adapter; a run replaces only an adapter "
            "folder (or an empty one), even with --overwrite. Choose another --output."
        )


def finished_adapter(directory: str | Path, recipe: dict[str, Any]) -> AdapterInfo | None:
    """The adapter already in ``directory`` when it was trained with ``recipe``: re-running changes nothing.

    An adapter trained otherwise (or unreadable) is never replaced silently, since collections indexed
    with it would stop opening: the run is refused, naming the settings that differ (``--overwrite``).
    """
    from llara_rag.encoding.adapter import read_adapter_info

    path = Path(directory)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    try:
        info = read_adapter_info(path) if (path / LLARA_CONFIG_FILE).is_file() else None
    except AdapterError as error:
        raise InvalidInputError(f"{error} Or pass --overwrite to train a new adapter in its place.") from None
    recorded = info.training.get("recipe") if info else None
    if recorded == recipe:
        logger.info("%s is already complete with these settings; nothing to do", directory)
        return info
    differing = sorted(k for k in {*recipe, *(recorded or {})} if (recorded or {}).get(k) != recipe.get(k))
    what = (
        f"trained with other settings ({', '.join(differing[:6])} differ)" if recorded else "not of this run"
    )
    raise InvalidInputError(
        f"{directory} already exists, {what}; pass --overwrite to replace it (collections indexed with an "
        "adapter there will need re-indexing), or choose another --output."
    )


def clear_checkpoints(output_dir: str | Path) -> None:
    """Removes a previous run's checkpoints (a fresh start must not resume them, nor have them rotate its own)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return
    for item in folder.iterdir():
        if item.is_dir() and (item.name.startswith("checkpoint-") or item.name in CHECKPOINT_SUBFOLDERS):
            shutil.rmtree(item)


def last_checkpoint(args: StageArguments, resume: bool) -> str | None:
    """The newest checkpoint in ``args.output_dir`` to resume from, or None for a fresh start."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(args.output_dir) if resume and Path(args.output_dir).is_dir() else None
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    return checkpoint


class CollapseGuard(TrainerCallback):
    """Watches the logged in-batch cosine; warns and (by default) stops when embeddings collapse.

    Users who trained LLaRA's bag-of-words losses alone saw every similarity drift to 1
    (FlagEmbedding issue #538); a collapsed embedder retrieves at random, so stopping early saves
    the run's time and keeps a useless adapter from being written.
    """

    def __init__(self, threshold: float, patience: int, stop: bool) -> None:
        self.threshold = threshold
        self.patience = patience
        self.stop = stop
        self.strikes = 0
        self.collapsed_at: int | None = None

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **_: Any,
    ) -> None:
        value = (logs or {}).get(COSINE_METRIC)
        if value is None:
            return
        self.strikes = self.strikes + 1 if value >= self.threshold else 0
        if self.strikes < self.patience or self.collapsed_at is not None:
            return
        self.collapsed_at = state.global_step
        logger.warning(
            "Embedding collapse at step %d: in-batch mean cosine %.4f >= %.3f for %d logs in a row. Lower the "
            "learning rate, raise the LM weight, lower the bag-of-words weight or keep stop-word removal on.",
            state.global_step,
            value,
            self.threshold,
            self.strikes,
        )
        if self.stop:
            control.should_training_stop = True


class TrainingEncoder:
    """The model being trained, seen as an encoder: the served prompts, lengths and pooling, current weights."""

    def __init__(
        self,
        model: torch.nn.Module,
        backbone: Backbone,
        step: int,
        batch_size: int = 16,
        *,
        lowercase: bool = False,
    ) -> None:
        from llara_rag.encoding.encoder import EncoderConfig, PromptInputs

        self.model, self.batch_size = model, batch_size
        self.inputs = PromptInputs(backbone.tokenizer, backbone.special_ids, lowercase=lowercase)
        served = EncoderConfig.model_fields
        self.max_length = {
            "query": served["query_max_length"].default,
            "passage": served["passage_max_length"].default,
        }
        self.fingerprint = f"training-step-{step}"
        self.dimension = backbone.hidden_size

    def encode(self, texts: Sequence[str], side: Side) -> np.ndarray:
        """As the encoder batches (longest first, same padding), through the model's current weights."""
        from llara_rag.encoding.encoder import encode_longest_first
        from llara_rag.training.losses.info_nce import embed

        return encode_longest_first(
            self.inputs(texts, side, self.max_length[side]),
            lambda batch: embed(self.model, batch),
            dimension=self.dimension,
            batch_size=self.batch_size,
            pad_id=self.inputs.pad_id,
            device=next(self.model.parameters()).device,
            description=f"Encoding {side}s",
            show_progress=False,
        )

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encode(queries, "query")

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray:
        return self.encode(passages, "passage")


class StepEvaluator(Protocol):
    """Scores the model being trained every ``every`` steps, e.g. nDCG@10 on a labelled collection
    (:class:`llara_rag.evaluation.RetrievalEvaluator`); the trainer logs the scores as ``eval_*``."""

    every: int

    def __call__(self, encoder: TrainingEncoder) -> Mapping[str, float]: ...


class EvaluateEvery(TrainerCallback):
    """Asks the Trainer for an evaluation every ``every`` steps and at the last one."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            control.should_evaluate = True
        return control


class AdapterTrainer(Trainer):
    """A Trainer that minimises a :class:`TrainingLoss`, logs its metrics and writes an adapter directory."""

    args: StageArguments

    def __init__(
        self,
        *,
        backbone: Backbone,
        loss: TrainingLoss,
        evaluator: StepEvaluator | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self.loss = loss
        self.evaluator = evaluator
        self.guard = CollapseGuard(
            self.args.collapse_threshold, self.args.collapse_patience, self.args.stop_on_collapse
        )
        self.add_callback(self.guard)
        if evaluator is not None:
            self.add_callback(EvaluateEvery(evaluator.every))
        self._running: defaultdict[str, list[float]] = defaultdict(list)

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """The evaluator's scores of the current weights, logged (to every ``report_to`` too) as ``eval_*``."""
        if self.evaluator is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        try:
            scores = self.evaluator(
                TrainingEncoder(
                    model, self.backbone, self.state.global_step, lowercase=self.args.text_lowercase
                )
            )
        finally:
            model.train(was_training)
        metrics = {f"{metric_key_prefix}_{name}": round(float(value), 4) for name, value in scores.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with the special-token rows moved to a group of their own learning rate.

        Those rows start as one shared point, and at the LoRA rate they move a few percent of an
        embedding's norm in a run of a few hundred steps; a larger scale lets them drift apart.
        On cranfield x10 did not retrieve better (``benchmarks/results/adaptation.md``), so it is
        1 by default. The scheduler scales every group alike, so warm-up and decay still apply.
        """
        optimizer = super().create_optimizer(model)
        scale = self.args.special_tokens_lr_scale
        if scale == 1.0 or any(group.get("name") == SPECIAL_TOKENS_GROUP for group in optimizer.param_groups):
            return optimizer
        rows = [p for n, p in (model or self.model).named_parameters() if p.requires_grad and TOKEN_ROWS in n]
        if not rows:
            return optimizer
        moved = {id(p) for p in rows}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in moved]
        group = {"params": rows, "lr": self.args.learning_rate * scale, "weight_decay": 0.0}
        optimizer.add_param_group({**group, "name": SPECIAL_TOKENS_GROUP})
        return optimizer

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        loss, metrics, embeddings = self.loss(model, inputs)
        if model.training:
            self.record_metrics(**metrics)
            self.record_embeddings(embeddings.detach())
        return (loss, {}) if return_outputs else loss

    def raise_if_collapsed(self, advice: str) -> None:
        """After training: a run the guard stopped writes no adapter; the error says why and what to try."""
        if self.guard.collapsed_at is not None and self.args.stop_on_collapse:
            raise EmbeddingCollapseError(
                f"Training stopped at step {self.guard.collapsed_at}: the embeddings collapsed (in-batch "
                f"mean cosine >= {self.args.collapse_threshold}); no adapter was written. Checkpoints are in "
                f"{self.args.output_dir}. {advice}"
            )

    def record_metrics(self, **values: float | torch.Tensor) -> None:
        """Values averaged over the steps since the last log and logged beside the loss."""
        for name, value in values.items():
            self._running[name].append(float(value))

    def record_embeddings(self, embeddings: torch.Tensor) -> None:
        from llara_rag.training.losses.llara import mean_offdiagonal_cosine

        self.record_metrics(**{COSINE_METRIC: mean_offdiagonal_cosine(embeddings)})

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._running:
            logs.update({name: round(sum(v) / len(v), 5) for name, v in self._running.items()})
            self._running.clear()
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Saves the LoRA weights and the special-token rows, not the whole resized embedding matrix.

        peft stores the full embeddings of any resized vocabulary by default (hundreds of MB);
        the backbone loader recreates the base rows exactly, so the adapter only needs the new ones.
        Sharded runs (FSDP, ZeRO-3) keep the Trainer's gathering save.
        """
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if self.is_fsdp_enabled or (plugin is not None and plugin.zero_stage == 3):
            super().save_model(output_dir, _internal_call)
            return
        directory = output_dir or self.args.output_dir
        if self.args.should_save:
            os.makedirs(directory, exist_ok=True)
            self.accelerator.unwrap_model(self.model).save_pretrained(directory, save_embedding_layers=False)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(directory)

    def summary(self) -> dict[str, Any]:
        """What the model card and ``llara_config.json`` record about the run."""
        history = [entry for entry in self.state.log_history if "loss" in entry]
        lora = self.accelerator.unwrap_model(self.model).peft_config[
            "default"
        ]  # a continued adapter keeps its own
        return {
            "steps": self.state.global_step,
            "epochs": round(float(self.state.epoch or 0.0), 4),
            "first_log": history[0] if history else None,
            "last_log": history[-1] if history else None,
            "collapsed_at_step": self.guard.collapsed_at,
            "objective": self.loss.get_config_dict(),
            "hyperparameters": {
                "learning_rate": self.args.learning_rate,
                "batch_size": self.args.per_device_train_batch_size * max(1, self.args.world_size),
                "gradient_accumulation_steps": self.args.gradient_accumulation_steps,
                "lora_r": lora.r,
                "lora_alpha": lora.lora_alpha,
                "lora_dropout": lora.lora_dropout,
                "lora_target_modules": sorted({name.rsplit(".", 1)[-1] for name in lora.target_modules})
                if isinstance(lora.target_modules, (set, list))
                else lora.target_modules,
                "train_special_tokens": lora.trainable_token_indices is not None,
                "special_tokens_lr_scale": self.args.special_tokens_lr_scale,
            },
        }

    def write_adapter(
        self,
        directory: str | Path,
        *,
        stage: str,
        training: dict[str, Any],
        description: str,
        lengths: TrainedLengths,
        finish: Callable[[Path], None] | None = None,
    ) -> Path:
        """Saves adapter, tokenizer, ``llara_config.json`` and a model card, then renames them into place.

        ``finish`` gets the complete staging directory before the rename, to add files computed from
        the saved adapter (the domain whitening), so those too are all there or not at all.
        """
        target = Path(directory).resolve()
        staging = target.parent / f".{target.name}.partial"
        if self.is_world_process_zero():
            shutil.rmtree(staging, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
        self.save_model(str(staging))  # every rank takes part: DeepSpeed gathers sharded weights here
        if self.is_world_process_zero():
            info = AdapterInfo(
                backbone=self.args.model,
                backbone_identity=self.backbone.source.identity,
                special_token_ids=list(self.backbone.special_ids.all),
                stage=stage,
                lowercase=self.args.text_lowercase,
                trained_lengths=lengths,
                training=training,
            )
            write_adapter_info(staging, info)
            write_model_card(staging, info, description)
            if finish:
                finish(staging)
            _replace_directory(staging, target)
            logger.info("Adapter written to %s", target)
        self.accelerator.wait_for_everyone()
        return target


def run_stage(
    backbone: Backbone,
    model: torch.nn.Module,
    loss: TrainingLoss,
    dataset: Sequence[Any],
    collator: Callable[[list[Any]], dict[str, torch.Tensor]],
    args: StageArguments,
    *,
    resume: bool,
    evaluator: StepEvaluator | None = None,
    announce: Callable[[AdapterTrainer], None] | None = None,
) -> AdapterTrainer:
    """Trains ``model`` on ``loss`` over ``dataset``, from the last checkpoint when ``resume``; every stage's
    one path. ``announce`` runs before a fresh (not resumed) run starts, e.g. to log its expected time.

    Raises :class:`EmbeddingCollapseError` (with the loss's advice) when the guard stopped the run.
    """
    trainer = AdapterTrainer(
        backbone=backbone,
        loss=loss,
        evaluator=evaluator,
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=backbone.tokenizer,
    )
    if args.compile_layers:
        compile_layers(model)
    checkpoint = last_checkpoint(args, resume)
    if announce is not None and checkpoint is None:
        announce(trainer)
    with flushed_denormals():
        trainer.train(resume_from_checkpoint=checkpoint)
    trainer.raise_if_collapsed(loss.collapse_advice)
    return trainer


def compile_layers(model: torch.nn.Module) -> None:
    """``--compile``: the model's repeated layers compiled in place (:mod:`llara_rag.encoding.compilation`),
    which also fuses LoRA's scaling and sum, norms and activations: fewer intermediate tensors, a quarter
    less peak memory."""
    _check_compiler(next(model.parameters()).device)
    if not (count := compile_repeated_layers(model)):
        raise InvalidInputError(f"--compile found no stack of identical layers in {type(model).__name__}.")
    logger.info("Compiling %d repeated blocks as they first run", count)


def _check_compiler(device: torch.device) -> None:
    """Fails before training when torch.compile cannot work on ``device`` (no C++ compiler on a CPU, no
    Triton on a GPU), rather than at the first step with the compiler's traceback."""
    import torch

    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2, device=device))
    except Exception as error:  # the backend's errors have no common base class
        raise InvalidInputError(
            f"--compile needs a working torch.compile, which failed here: {type(error).__name__}: "
            f"{(str(error).splitlines() or [''])[0]} (on a CPU it needs a C++ compiler such as "
            "g++). Run without --compile."
        ) from error


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Treats subnormal floats as zero on the CPU while training, then restores torch's default.

    Adam's second moments of the LoRA rows reach ~1e-40 (a small gradient, squared): on x86 every
    operation on such a subnormal takes a slow microcode path; flushing them made EBAE/EBAR steps 5 %
    faster (``benchmarks/results/train_speed.md``). Values that small change no update.
    """
    import torch

    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _replace_directory(staging: Path, target: Path) -> None:
    """Moves a finished directory into place; an existing adapter is replaced only once the new one is whole,
    and anything else is never replaced (checked again: files may have appeared while it trained)."""
    if not replaceable(target):
        raise InvalidInputError(
            f"{target} now holds files that are not a llara-rag adapter; the new adapter is kept in "
            f"{staging}: move it where you want it."
        )
    if not target.exists():
        os.replace(staging, target)
        return
    previous = target.parent / f".{target.name}.previous-{int(time.time())}"
    os.replace(target, previous)
    os.replace(staging, target)
    shutil.rmtree(previous, ignore_errors=True)
