"""Ranking a BEIR-format collection: the collection, the retrieval systems (LLaRA, BM25, the hybrid and the
dense baselines), and their cached corpus vectors.

Shared by evaluation (which scores the rankings) and training (whose negative miners rank with the same
systems), so neither imports the other.
"""

from llara_rag.ranking.baselines import minilm_system, raw_llm_system
from llara_rag.ranking.beir import Collection, SkippedInputs, load_collection
from llara_rag.ranking.cache import VectorCache
from llara_rag.ranking.systems import (
    BM25System,
    DenseSystem,
    HybridSystem,
    RetrievalSystem,
    TextEncoder,
    exact_top_k,
    llara_label,
    llara_system,
)

__all__ = [
    "BM25System",
    "Collection",
    "DenseSystem",
    "HybridSystem",
    "RetrievalSystem",
    "SkippedInputs",
    "TextEncoder",
    "VectorCache",
    "exact_top_k",
    "llara_label",
    "llara_system",
    "load_collection",
    "minilm_system",
    "raw_llm_system",
]
