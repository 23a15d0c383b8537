"""Measuring retrieval on BEIR-format collections: LLaRA against the baselines users know.

Start with :func:`evaluate` (a folder and an :class:`EvaluationConfig` in, an :class:`EvaluationResult`
out); :func:`evaluate_systems` takes hand-built systems, e.g. an adapted and an unadapted encoder. The
collections and systems themselves live in :mod:`llara_rag.ranking` (re-exported here), which training's
negative miners share.
"""

from llara_rag.evaluation.during_training import RetrievalEvaluator
from llara_rag.evaluation.harness import DEPTH, EvaluationConfig, build_systems, evaluate, evaluate_systems
from llara_rag.evaluation.metrics import METRICS, mean_scores, per_query_scores
from llara_rag.evaluation.report import markdown_table, plot, write_report
from llara_rag.evaluation.results import EvaluationResult, SystemResult
from llara_rag.ranking import (
    BM25System,
    Collection,
    DenseSystem,
    HybridSystem,
    RetrievalSystem,
    SkippedInputs,
    VectorCache,
    llara_system,
    load_collection,
    minilm_system,
    raw_llm_system,
)

__all__ = [
    "DEPTH",
    "METRICS",
    "BM25System",
    "Collection",
    "DenseSystem",
    "EvaluationConfig",
    "EvaluationResult",
    "HybridSystem",
    "RetrievalEvaluator",
    "RetrievalSystem",
    "SkippedInputs",
    "SystemResult",
    "VectorCache",
    "build_systems",
    "evaluate",
    "evaluate_systems",
    "llara_system",
    "load_collection",
    "markdown_table",
    "mean_scores",
    "minilm_system",
    "per_query_scores",
    "plot",
    "raw_llm_system",
    "write_report",
]
