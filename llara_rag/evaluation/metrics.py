"""Retrieval metrics through pytrec_eval (trec_eval's own code), so figures compare with published ones.

Graded relevance is used as trec_eval uses it: the judged score is the gain in nDCG, and any score
above zero counts as relevant for recall, MRR and MAP. Every judged query counts in the mean; one the
run leaves out scores zero instead of silently disappearing.
"""

from __future__ import annotations

from collections.abc import Mapping

from llara_rag.extras import require
from llara_rag.ranking.beir import Qrels
from llara_rag.retrieval.fusion import top

METRICS: dict[str, str] = {
    "nDCG@10": "ndcg_cut_10",
    "Recall@100": "recall_100",
    "MRR@10": "recip_rank",
    "MAP@100": "map_cut_100",
}
"""Reported name -> pytrec_eval measure. MRR@10 is trec_eval's reciprocal rank on the top 10."""

MRR_DEPTH = 10


def per_query_scores(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Each metric of :data:`METRICS` for every judged query; missing queries score 0."""
    pytrec_eval = require("pytrec_eval", "eval")
    run = {query_id: {doc: float(score) for doc, score in scores.items()} for query_id, scores in run.items()}
    main = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.100"}).evaluate(run)
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top(run, MRR_DEPTH))
    scores: dict[str, dict[str, float]] = {}
    for query_id in qrels:
        values = {**main.get(query_id, {}), **mrr.get(query_id, {})}
        scores[query_id] = {metric: float(values.get(measure, 0.0)) for metric, measure in METRICS.items()}
    return scores


def mean_scores(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each metric averaged over all judged queries."""
    per_query = per_query_scores(qrels, run)
    return {
        metric: sum(scores[metric] for scores in per_query.values()) / len(per_query) for metric in METRICS
    }
