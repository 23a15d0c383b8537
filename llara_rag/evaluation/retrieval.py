"""Retrieval systems: anything that turns a collection into a ranked run, and dense retrieval over vectors.

A dense system encodes the corpus once (through :class:`VectorCache`), encodes the judged queries and
ranks by exact dot product; every encoder here returns L2-normalised vectors, so that is cosine.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Protocol

import numpy as np

from llara_rag.evaluation.cache import VectorCache
from llara_rag.evaluation.datasets import Collection
from llara_rag.fusion import CANDIDATES, Run, top

logger = logging.getLogger(__name__)

QUERY_CHUNK = 1024
"""Queries scored per matrix product: bounds memory at chunk x corpus floats."""


class TextEncoder(Protocol):
    """What dense retrieval needs from an encoder; LLaRAEncoder is one."""

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
