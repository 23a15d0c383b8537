"""Rankings and their fusion: the one hybrid of BM25 and LLaRA, used by ``eval`` and by every retriever.

It lives here, beneath both the evaluation harness and :mod:`llara_rag.retrieval.retriever`, so that what users
retrieve with is the code that was measured, not a copy of it. Light on purpose (numpy is imported
when scores are fused): the command line reads the retrieval modes from here to build its help.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, get_args

Run = dict[str, dict[str, float]]
"""query id -> document id -> score (higher is better), as pytrec_eval reads it."""

CANDIDATES = 1000
"""Runs are computed at least this deep and cut to the depth asked for, so a hybrid normalises each
part's scores over its candidates rather than over the head alone (which measured better on every pair
compared when the depth was chosen)."""


RetrievalMode = Literal["lexical", "dense", "hybrid"]
"""Where a retriever's chunks come from: BM25 alone, LLaRA vectors alone, or both fused."""
MODES: tuple[RetrievalMode, ...] = get_args(RetrievalMode)
DEFAULT_MODE: RetrievalMode = "hybrid"
"""The best measured mode with the shipped default, on every collection (benchmarks/results/default.md)."""
DEFAULT_ALPHA = 0.5
"""The dense side's weight in the hybrid (the lexical side gets the rest): equal weights, as ``eval``
measures its hybrid (``EvaluationConfig.bm25_weight`` 0.5)."""


def top(run: Mapping[str, Mapping[str, float]], depth: int) -> Run:
    """The ``depth`` best-scored documents of each query (ties broken by id, as trec_eval breaks them)."""
    return {
        query_id: dict(heapq.nlargest(depth, scores.items(), key=lambda item: (item[1], item[0])))
        for query_id, scores in run.items()
    }


def z_scores(scores: Mapping[str, float]) -> dict[str, float]:
    import numpy as np

    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    mean, spread = values.mean(), values.std() or 1.0
    return {doc_id: (score - mean) / spread for doc_id, score in scores.items()}


Weighting = Callable[[Sequence[Mapping[str, float]]], Sequence[float]]
"""One query's weights from each run's z-normalised scores (a run that returned nothing is empty)."""


def convex_fusion(
    runs: Sequence[Mapping[str, Mapping[str, float]]], weights: Sequence[float] | Weighting, depth: int
) -> Run:
    """Σ weight x z-score of each run's scores per query; a document a run did not return gets its lowest.

    A convex combination of normalised scores uses how far apart the scores are, which reciprocal-rank
    fusion throws away (Bruch et al. 2023, TOIS); it measured better than RRF (k=60) here
    (benchmarks/results/adaptation.md keeps rows fused both ways).
    """
    import numpy as np

    fused: Run = {}
    for query_id in {query_id for run in runs for query_id, scores in run.items() if scores}:
        per_run = [run.get(query_id) or {} for run in runs]
        doc_ids = list(dict.fromkeys(doc_id for scores in per_run for doc_id in scores))
        summed = np.zeros(len(doc_ids))
        normalised_runs = [z_scores(scores) if scores else {} for scores in per_run]
        query_weights = weights(normalised_runs) if callable(weights) else weights
        for weight, normalised in zip(query_weights, normalised_runs, strict=True):
            if normalised:
                floor = min(normalised.values())
                summed += weight * np.fromiter(
                    (normalised.get(doc_id, floor) for doc_id in doc_ids),
                    dtype=np.float64,
                    count=len(doc_ids),
                )
        fused[query_id] = dict(zip(doc_ids, summed.tolist()))
    return top(fused, depth)


HEAD = 10
"""Documents whose z-scores make a run's head strength."""

FusionWeighting = Literal["head", "fixed"]
"""How each query's hybrid weighs its two sides: ``fixed`` weights, or those weights scaled by each side's
head strength for that query (``head``), so a side whose best candidates barely stand out from the rest (a
query it cannot read, in capitals, misspelt or out of its domain) weighs less than one sure of its head."""
FUSION_WEIGHTINGS: tuple[FusionWeighting, ...] = get_args(FusionWeighting)
DEFAULT_WEIGHTING: FusionWeighting = "fixed"
"""The weighting that measured best over the collections and query variants of
benchmarks/results/robustness.md, where both are compared."""


def head_strength(normalised: Mapping[str, float]) -> float:
    """Mean z-score of a run's ``HEAD`` best, at least 0: how far its head stands out from its candidates."""
    return max(sum(heapq.nlargest(HEAD, normalised.values())) / HEAD, 0.0) if normalised else 0.0


def head_weighted(weights: Sequence[float]) -> Weighting:
    """``weights`` scaled by each run's head strength for the query, then normalised to sum 1."""

    def per_query(normalised_runs: Sequence[Mapping[str, float]]) -> list[float]:
        scaled = [weight * head_strength(scores) for weight, scores in zip(weights, normalised_runs, strict=True)]
        total = sum(scaled)
        return [value / total for value in scaled] if total else list(weights)

    return per_query


def fuse(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
    weights: Sequence[float],
    depth: int,
    weighting: FusionWeighting = DEFAULT_WEIGHTING,
) -> Run:
    """The hybrid of ``runs``: :func:`convex_fusion` at ``weights``, per query re-weighted by ``weighting``."""
    return convex_fusion(runs, head_weighted(weights) if weighting == "head" else weights, depth)
