"""Metrics against hand-computed values, rank fusion and exact top-k."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llara_rag.evaluation.metrics import mean_scores, per_query_scores
from llara_rag.ranking.systems import exact_top_k
from llara_rag.retrieval.fusion import convex_fusion, fuse, head_strength, z_scores

GRADED_QRELS = {"q": {"a": 2, "b": 1, "z": 0}}
GRADED_RUN = {"q": {"b": 3.0, "x": 2.0, "a": 1.0}}


def test_graded_case_matches_hand_computation() -> None:
    scores = per_query_scores(GRADED_QRELS, GRADED_RUN)["q"]
    # ranks: b (gain 1), x (0), a (gain 2); ideal order: a (2), b (1); trec_eval gain = grade.
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert scores["nDCG@10"] == pytest.approx(dcg / ideal)
    assert scores["MRR@10"] == pytest.approx(1.0)
    assert scores["Recall@100"] == pytest.approx(1.0)
    assert scores["MAP@100"] == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_grades_change_ndcg_but_not_binary_metrics() -> None:
    swapped = per_query_scores({"q": {"a": 1, "b": 2}}, GRADED_RUN)["q"]
    original = per_query_scores(GRADED_QRELS, GRADED_RUN)["q"]
    assert swapped["nDCG@10"] > original["nDCG@10"]
    for metric in ("MRR@10", "Recall@100", "MAP@100"):
        assert swapped[metric] == pytest.approx(original[metric])


def test_mrr_is_cut_at_ten_and_recall_at_one_hundred() -> None:
    run = {"q": {f"d{i:03d}": float(200 - i) for i in range(150)}}
    at_eleven = per_query_scores({"q": {"d010": 1}}, run)["q"]  # rank 11
    assert at_eleven["MRR@10"] == 0.0
    assert at_eleven["Recall@100"] == 1.0
    at_five = per_query_scores({"q": {"d004": 1}}, run)["q"]
    assert at_five["MRR@10"] == pytest.approx(1 / 5)
    beyond = per_query_scores({"q": {"d120": 1}}, run)["q"]  # rank 121
    assert beyond["Recall@100"] == 0.0
    assert beyond["MAP@100"] == 0.0


def test_judged_queries_missing_from_the_run_count_as_zero() -> None:
    qrels = {**GRADED_QRELS, "q2": {"c": 1}}
    means = mean_scores(qrels, {**GRADED_RUN, "unjudged": {"a": 1.0}})
    assert means["MRR@10"] == pytest.approx(0.5)
    assert means["Recall@100"] == pytest.approx(0.5)


def test_convex_fusion_sums_weighted_z_scores_with_the_lowest_for_missing_documents() -> None:
    first = {"q": {"a": 3.0, "b": 1.0}, "only-first": {"x": 1.0, "y": 0.0}}  # z-scores a 1, b -1
    second = {"q": {"b": 0.9, "c": 0.1, "d": 0.5}}  # z-scores b 1.2247, c -1.2247, d 0
    fused = convex_fusion([first, second], [0.5, 0.5], depth=10)
    assert fused["q"]["a"] == pytest.approx(0.5 * 1 + 0.5 * -1.2247, abs=1e-4)
    assert fused["q"]["c"] == pytest.approx(0.5 * -1 + 0.5 * -1.2247, abs=1e-4)
    assert list(fused["q"]) == ["b", "a", "d", "c"]
    assert list(fused["only-first"]) == ["x", "y"]
    assert list(convex_fusion([first, second], [0.9, 0.1], depth=1)["q"]) == ["a"]


def test_head_weighting_trusts_the_side_whose_head_stands_out() -> None:
    """Side one singles out 'a' far above 30 others; side two ranks 'b' first by a hair (a flat run)."""
    others = {f"o{i}": 0.0 for i in range(30)}
    sure = {"q": {"a": 10.0, "b": 0.1, **others}}
    flat = {"q": {"b": 1.0, "a": 0.0, **{key: 0.9 for key in others}}}
    assert list(fuse([sure, flat], [0.5, 0.5], depth=1, weighting="fixed")["q"]) == ["b"]
    assert list(fuse([sure, flat], [0.5, 0.5], depth=1, weighting="head")["q"]) == ["a"]
    strengths = [head_strength(z_scores(run["q"])) for run in (sure, flat)]
    assert strengths[0] > 1.5 * strengths[1] > 0
    tied, level = {"q": {"a": 1.0, "b": 1.0}}, {"q": {"b": 2.0, "c": 2.0}}  # no head on either side
    assert fuse([tied, level], [0.3, 0.7], depth=3, weighting="head") == fuse(
        [tied, level], [0.3, 0.7], depth=3, weighting="fixed"
    )


def test_exact_top_k_matches_a_full_sort() -> None:
    generator = np.random.default_rng(0)
    queries, docs = generator.normal(size=(5, 8)), generator.normal(size=(30, 8))
    doc_ids = [f"d{i}" for i in range(30)]
    run = exact_top_k(["q0", "q1", "q2", "q3", "q4"], queries, doc_ids, docs, depth=7)
    for row, query_id in enumerate(run):
        expected = [doc_ids[i] for i in np.argsort(-(docs @ queries[row]))[:7]]
        assert sorted(run[query_id], key=run[query_id].get, reverse=True) == expected
    assert all(len(scores) == 30 for scores in exact_top_k(["q"], queries[:1], doc_ids, docs, 100).values())
