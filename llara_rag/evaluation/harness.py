"""The evaluation entry points: a BEIR folder and an encoder in, one metrics row per system out.

``evaluate`` is the one-call path (the CLI's): systems are named. Adapted against unadapted against
the BM25 hybrid, with scores per system name::

    from llara_rag import EncoderConfig
    from llara_rag.evaluation import EvaluationConfig, evaluate

    config = EvaluationConfig(encoder=EncoderConfig(adapter="out/adapter"),
                              systems=("bm25", "llara-base", "llara", "hybrid"), output_dir="out/eval")
    evaluate("data/scifact", config).scores()  # {"bm25": 0.68, "llara-base": ..., "llara": ..., "hybrid": ...}

``evaluate_systems`` takes system objects, for comparisons names do not cover (two adapters side by
side): build them with ``llara_system(EncoderConfig(...), VectorCache(), name=...)``, ``BM25System()``
and ``HybridSystem([...])``. Corpus vectors are cached per encoder fingerprint, so only new encoders
pay for encoding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.evaluation.metrics import mean_scores
from llara_rag.evaluation.report import write_report
from llara_rag.evaluation.results import EvaluationResult, SystemResult
from llara_rag.ranking.baselines import minilm_system, raw_llm_system
from llara_rag.ranking.beir import Collection, load_collection
from llara_rag.ranking.cache import VectorCache
from llara_rag.ranking.systems import BM25System, HybridSystem, RetrievalSystem, llara_system
from llara_rag.retrieval.fusion import DEFAULT_ALPHA, DEFAULT_WEIGHTING, FusionWeighting

logger = logging.getLogger(__name__)

DEPTH = 100
"""Documents retrieved per query: the deepest cut-off of the metrics (Recall@100, MAP@100)."""

SystemName = Literal["bm25", "minilm", "minilm-hybrid", "raw-llm", "llara-base", "llara", "hybrid"]
"""The systems :func:`build_systems` knows, in table order:

- ``bm25``: BM25 (bm25s, stemmed, stop-words removed);
- ``minilm``: all-MiniLM-L6-v2, the small supervised encoder;
- ``minilm-hybrid``: ``bm25`` and ``minilm`` fused as ``hybrid`` fuses LLaRA: what a user could build
  without LLaRA;
- ``raw-llm``: the backbone, mean-pooled, with no LLaRA prompt (encodes the corpus a second time);
- ``llara-base``: LLaRA prompts on the backbone without the adapter (the "before" of an adaptation);
- ``llara``: the LLaRA encoder of ``EvaluationConfig.encoder``, adapter included;
- ``hybrid``: ``bm25`` and ``llara`` fused by their z-normalised scores (``bm25_weight`` to BM25).
"""


class EvaluationConfig(BaseModel):
    """Which LLaRA encoder to measure, which systems to report beside it, and where results go."""

    model_config = ConfigDict(frozen=True)

    encoder: EncoderConfig = Field(default_factory=EncoderConfig, description="Model + adapter of 'llara'.")
    systems: tuple[SystemName, ...] = ("bm25", "minilm", "raw-llm", "llara", "hybrid")
    split: str = Field(default="test", description="Reads qrels/<split>.tsv.")
    bm25_weight: float = Field(
        default=1 - DEFAULT_ALPHA,
        ge=0,
        le=1,
        description="BM25's share of the 'hybrid' scores; 'llara' gets the rest (retrievers' 1 - alpha).",
    )
    fusion: FusionWeighting = Field(
        default=DEFAULT_WEIGHTING, description="The hybrids' per-query weighting, as the retrievers' `fusion`."
    )
    cache_dir: Path | None = Field(default=None, description="Corpus vector cache; default: <cache>/vectors.")
    output_dir: Path | None = Field(
        default=None, description="Where <collection>.{json,md,png} go; None: nowhere."
    )


def build_systems(config: EvaluationConfig, cache: VectorCache) -> list[RetrievalSystem]:
    """Turns the names of ``config.systems`` into systems, in that order, sharing parts with the hybrid."""
    bm25 = BM25System()
    llara = llara_system(config.encoder, cache)
    minilm = minilm_system(cache, device=config.encoder.device)
    unadapted = config.encoder.model_copy(update={"adapter": None})
    bm25_share = [config.bm25_weight, 1 - config.bm25_weight]
    factories = {
        "bm25": lambda: bm25,
        "minilm": lambda: minilm,
        "minilm-hybrid": lambda: HybridSystem(
            [bm25, minilm], bm25_share, name="minilm-hybrid", weighting=config.fusion
        ),
        "raw-llm": lambda: raw_llm_system(config.encoder, cache),
        "llara-base": lambda: llara_system(unadapted, cache, name="llara-base"),
        "llara": lambda: llara,
        "hybrid": lambda: HybridSystem([bm25, llara], bm25_share, weighting=config.fusion),
    }
    names = list(dict.fromkeys(config.systems))
    if "llara-base" in names and config.encoder.adapter is None:
        logger.info("Without an adapter 'llara-base' is 'llara'; reporting it once")
        names = [name for name in names if name != "llara-base" or "llara" not in names]
    return [factories[name]() for name in names]


def evaluate_systems(collection: Collection, systems: Sequence[RetrievalSystem]) -> EvaluationResult:
    """Runs each system on ``collection`` and scores it with :func:`mean_scores`."""
    rows = []
    for system in systems:
        started = time.perf_counter()
        run = system.retrieve(collection, DEPTH)
        seconds = time.perf_counter() - started
        metrics = mean_scores(collection.qrels, run)
        logger.info(
            "%s | %s | %s (%.0f s)",
            collection.name,
            system.label,
            ", ".join(f"{name} {value:.3f}" for name, value in metrics.items()),
            seconds,
        )
        rows.append(
            SystemResult(
                name=system.name,
                label=system.label,
                metrics=metrics,
                seconds=round(seconds, 2),
                settings=system.describe(),
            )
        )
    return EvaluationResult(
        collection=collection.name,
        split=collection.split,
        documents=len(collection.doc_ids),
        queries=len(collection.queries),
        skipped=collection.skipped,
        systems=rows,
    )


def evaluate(dataset_dir: str | Path, config: EvaluationConfig | None = None) -> EvaluationResult:
    """Evaluates ``config.systems`` on one BEIR folder; writes JSON, markdown and a PNG if asked to."""
    config = config or EvaluationConfig()
    collection = load_collection(dataset_dir, config.split)
    result = evaluate_systems(collection, build_systems(config, VectorCache(config.cache_dir)))
    if config.output_dir is not None:
        write_report(result, config.output_dir)
    return result
