"""Retrieval systems: anything that turns a collection into a ranked run.

- dense retrieval with any encoder: the corpus encoded once (through :class:`VectorCache`), the judged
  queries encoded and ranked by exact dot product (every encoder here returns L2-normalised vectors, so
  that is cosine); :func:`llara_system` is the LLaRA encoder of an :class:`EncoderConfig`;
- BM25 (bm25s, Lucene scoring, English Snowball stemming, English stop-words removed, k1=1.2, b=0.75);
- a hybrid: a weighted sum of z-normalised scores of other systems (:func:`llara_rag.retrieval.fusion.fuse`).

The evaluation harness scores them and training's negative miners rank with them.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from llara_rag.encoding.adapter import DEFAULT_ADAPTER
from llara_rag.indexing.lexical import BM25_B, BM25_K1, STEMMER, STOPWORDS, bm25_top, build_bm25
from llara_rag.ranking.beir import Collection
from llara_rag.ranking.cache import VectorCache, dtype_setting
from llara_rag.retrieval.fusion import CANDIDATES, DEFAULT_WEIGHTING, FusionWeighting, Run, fuse, top

if TYPE_CHECKING:
    from llara_rag.encoding.encoder import EncoderConfig

logger = logging.getLogger(__name__)

QUERY_CHUNK = 1024
"""Queries scored per matrix product: bounds memory at chunk x corpus floats."""


class TextEncoder(Protocol):
    """What dense retrieval needs from an encoder; LLaRAEncoder is one. One may also have a true ``lowercase``
    (its vectors ignore case), which lets corpora that differ in case alone share cached vectors."""

    fingerprint: str

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray: ...


class RetrievalSystem(ABC):
    """A named way of ranking a collection's documents for its queries.

    ``retrieve`` remembers its runs, :data:`CANDIDATES` deep, so a system that is both reported alone
    and fused into a hybrid is computed once.
    """

    def __init__(self, name: str, label: str) -> None:
        self.name = name
        self.label = label
        self._runs: dict[tuple[str, int], tuple[int, Run]] = {}

    def retrieve(self, collection: Collection, depth: int) -> Run:
        key = (collection.digest, hash(tuple(collection.queries.items())))
        if key not in self._runs or self._runs[key][0] < depth:
            deepest = max(depth, CANDIDATES)
            self._runs[key] = (deepest, self._retrieve(collection, deepest))
        deepest, run = self._runs[key]
        return run if deepest == depth else top(run, depth)

    @abstractmethod
    def _retrieve(self, collection: Collection, depth: int) -> Run: ...

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """The settings that decide this system's results, for the JSON report."""


def exact_top_k(
    query_ids: Sequence[str], queries: np.ndarray, doc_ids: Sequence[str], docs: np.ndarray, depth: int
) -> Run:
    """The ``depth`` highest dot products per query, computed exactly (no approximate index)."""
    k = min(depth, len(doc_ids))
    run: Run = {}
    for start in range(0, len(query_ids), QUERY_CHUNK):
        scores = queries[start : start + QUERY_CHUNK] @ docs.T
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for row, indices in enumerate(best):
            run[query_ids[start + row]] = {doc_ids[i]: float(scores[row, i]) for i in indices}
    return run


class DenseSystem(RetrievalSystem):
    """Dense retrieval with any :class:`TextEncoder`, loaded only when first needed.

    ``settings`` names what changes the corpus vectors but is not in the encoder's fingerprint (such as
    a truncation length); it joins the cache key.
    """

    def __init__(
        self,
        name: str,
        label: str,
        load: Callable[[], TextEncoder],
        cache: VectorCache,
        settings: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(name, label)
        self._load = load
        self.cache = cache
        self.settings = dict(settings or {})

    @cached_property
    def encoder(self) -> TextEncoder:
        return self._load()

    def corpus_vectors(self, collection: Collection) -> np.ndarray:
        """Cached under the texts the encoder reads: a lower-casing encoder's vectors of a corpus serve every
        corpus that differs from it in case alone."""
        if getattr(self.encoder, "lowercase", False):
            folded = tuple(text.lower() for text in collection.doc_texts)
            if folded != collection.doc_texts:
                collection = dataclasses.replace(collection, doc_texts=folded)
        key = VectorCache.key(self.encoder.fingerprint, self.settings, collection.digest)
        path = self.cache.path(collection.name, key)
        vectors = self.cache.load(path, collection.doc_ids)
        if vectors is None:
            logger.info(
                "%s: encoding %d documents with %s", collection.name, len(collection.doc_ids), self.label
            )
            vectors = self.encoder.encode_passages(list(collection.doc_texts))
            self.cache.save(path, collection.doc_ids, vectors)
        return vectors

    def _retrieve(self, collection: Collection, depth: int) -> Run:
        docs = self.corpus_vectors(collection)
        query_ids = list(collection.queries)
        queries = self.encoder.encode_queries([collection.queries[query_id] for query_id in query_ids])
        return exact_top_k(query_ids, queries, collection.doc_ids, docs, depth)

    def describe(self) -> dict[str, object]:
        return {"kind": "dense", "fingerprint": self.encoder.fingerprint, **self.settings}


def llara_label(config: EncoderConfig) -> str:
    if config.adapter is None:
        adapter = " (unadapted)"
    elif Path(config.adapter) == DEFAULT_ADAPTER:
        adapter = " (shipped default adapter)"
    else:
        adapter = f" + adapter {Path(config.adapter).name}"
    precision = " at int8" if config.precision == "int8" else ""
    return f"LLaRA {Path(config.model).name}{adapter}{precision}"


def llara_system(config: EncoderConfig, cache: VectorCache, name: str = "llara") -> DenseSystem:
    """The LLaRA encoder of ``config`` as a dense system, sharing the process-wide loaded encoder."""
    from llara_rag.encoding.backbone import resolve_device, resolve_dtype
    from llara_rag.encoding.encoder import get_encoder

    dtype = resolve_dtype(config.dtype, resolve_device(config.device))
    settings = {"passage_max_length": config.passage_max_length, **dtype_setting(dtype, config.precision)}
    return DenseSystem(name, llara_label(config), lambda: get_encoder(config), cache, settings=settings)


class BM25System(RetrievalSystem):
    """bm25s over title + text; documents sharing no term with the query are not retrieved."""

    def __init__(self, k1: float = BM25_K1, b: float = BM25_B) -> None:
        super().__init__("bm25", "BM25")
        self.k1, self.b = k1, b

    def _retrieve(self, collection: Collection, depth: int) -> Run:
        index = build_bm25(collection.doc_texts, self.k1, self.b)
        query_ids = list(collection.queries)
        rankings = bm25_top(
            index, collection.doc_ids, [collection.queries[query_id] for query_id in query_ids], depth
        )
        return dict(zip(query_ids, rankings))

    def describe(self) -> dict[str, object]:
        return {
            "kind": "bm25",
            "library": f"bm25s {version('bm25s')}",
            "k1": self.k1,
            "b": self.b,
            "stemmer": f"{STEMMER} (PyStemmer {version('PyStemmer')})",
            "stopwords": STOPWORDS,
            "fields": "title + text",
        }


class HybridSystem(RetrievalSystem):
    """A weighted sum of other systems' z-normalised scores (:func:`llara_rag.retrieval.fusion.fuse`, the fusion every
    retriever uses); equal weights by default, scaled per query by each side's head strength unless
    ``weighting`` is fixed."""

    def __init__(
        self,
        parts: Sequence[RetrievalSystem],
        weights: Sequence[float] | None = None,
        name: str = "hybrid",
        weighting: FusionWeighting = DEFAULT_WEIGHTING,
    ) -> None:
        self.parts = list(parts)
        self.weighting = weighting
        self.weights = list(weights) if weights is not None else [1 / len(self.parts)] * len(self.parts)
        if len(self.weights) != len(self.parts):
            raise ValueError(f"{len(self.weights)} weights for {len(self.parts)} systems")
        terms = " + ".join(f"{weight:g} {part.label}" for weight, part in zip(self.weights, self.parts))
        per_query = ", weights scaled by head strength" if weighting == "head" else ""
        super().__init__(name, f"hybrid z-score({terms}{per_query})")

    def _retrieve(self, collection: Collection, depth: int) -> Run:
        runs = [part.retrieve(collection, CANDIDATES) for part in self.parts]
        return fuse(runs, self.weights, depth, self.weighting)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "convex z-score",
            "weighting": self.weighting,
            "parts": {
                part.name: {"weight": w, **part.describe()} for w, part in zip(self.weights, self.parts)
            },
        }
