"""Baselines and system assembly on adi with the tiny backbone: BM25's known score, raw-LLM pooling, sharing."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.evaluation import EvaluationConfig, build_systems, evaluate_systems, load_collection
from llara_rag.ranking.baselines import load_minilm, load_raw_llm
from llara_rag.ranking.beir import Collection
from llara_rag.ranking.cache import VectorCache
from llara_rag.ranking.systems import CANDIDATES, BM25System, HybridSystem, RetrievalSystem
from llara_rag.retrieval.fusion import Run


@pytest.fixture(scope="module")
def adi(data_dir: Path) -> Collection:
    return load_collection(data_dir / "adi")


def test_bm25_reproduces_its_adi_score_and_skips_non_matching_documents(adi: Collection) -> None:
    result = evaluate_systems(adi, [BM25System()])
    assert result.scores()["bm25"] == pytest.approx(0.483, abs=0.01)
    run = BM25System().retrieve(adi, 100)
    assert all(0 < len(scores) < len(adi.doc_ids) for scores in run.values())


def test_bm25_reproduces_the_reference_scifact_score(data_dir: Path) -> None:
    scifact = load_collection(data_dir / "scifact")
    assert evaluate_systems(scifact, [BM25System()]).scores()["bm25"] == pytest.approx(0.679, abs=0.01)


def test_raw_llm_pools_real_tokens_only_and_has_no_prompt(tiny_backbone_dir: Path) -> None:
    encoder = load_raw_llm(EncoderConfig(model=str(tiny_backbone_dir), batch_size=2))
    short, long = "cats purr", "the wing lift is a pressure flow of air above and below the wing"
    alone = encoder.encode([short], show_progress=False)
    padded = encoder.encode([short, long], show_progress=False)
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(padded, axis=1), 1.0, atol=1e-5)
    ids = encoder.tokenizer([short])["input_ids"][0]
    assert encoder.tokenizer.convert_ids_to_tokens(ids) == ["cats", "purr"]
    again = load_raw_llm(EncoderConfig(model=str(tiny_backbone_dir)))
    assert again.fingerprint == encoder.fingerprint
    shorter = load_raw_llm(EncoderConfig(model=str(tiny_backbone_dir), passage_max_length=8))
    assert shorter.fingerprint != encoder.fingerprint
    half = load_raw_llm(EncoderConfig(model=str(tiny_backbone_dir), dtype="bfloat16"))
    assert half.fingerprint != encoder.fingerprint  # bf16 vectors never answer for fp32 ones in the cache


def test_minilm_embeds_meaning() -> None:
    encoder = load_minilm()
    query = encoder.encode_queries(["how do cats show they are content"])
    passages = encoder.encode_passages(
        ["A purring cat is usually a happy cat.", "The stock market fell on Monday."]
    )
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    similarity = passages @ query[0]
    assert similarity[0] > similarity[1] + 0.2


def test_systems_follow_the_config_and_the_hybrid_shares_its_parts(tmp_path: Path) -> None:
    bare = EncoderConfig(adapter="none")
    config = EvaluationConfig(encoder=bare, systems=("bm25", "llara-base", "llara", "hybrid"))
    systems = build_systems(config, VectorCache(tmp_path))
    assert [system.name for system in systems] == ["bm25", "llara", "hybrid"]
    bm25, llara, hybrid = systems
    assert isinstance(hybrid, HybridSystem) and hybrid.parts == [bm25, llara] and hybrid.weights == [0.5, 0.5]
    peers = build_systems(EvaluationConfig(systems=("bm25", "minilm", "minilm-hybrid")), VectorCache(tmp_path))
    bm25, minilm, minilm_hybrid = peers
    assert isinstance(minilm_hybrid, HybridSystem) and minilm_hybrid.parts == [bm25, minilm]
    assert minilm_hybrid.name == "minilm-hybrid" and minilm_hybrid.weights == [0.5, 0.5]
    leaning = EvaluationConfig(systems=("bm25", "llara", "hybrid"), bm25_weight=0.75)
    assert build_systems(leaning, VectorCache(tmp_path))[-1].weights == [0.75, 0.25]
    adapted = EvaluationConfig(encoder=EncoderConfig(adapter="some/adapter"), systems=("llara-base", "llara"))
    assert [s.label for s in build_systems(adapted, VectorCache(tmp_path))] == [
        "LLaRA smollm2 (unadapted)",
        "LLaRA smollm2 + adapter adapter",
    ]
    shipped = EvaluationConfig(systems=("llara-base", "llara"))
    assert [s.label for s in build_systems(shipped, VectorCache(tmp_path))] == [
        "LLaRA smollm2 (unadapted)",
        "LLaRA smollm2 (shipped default adapter)",
    ]


class CountingBM25(BM25System):
    depths: ClassVar[list[int]] = []

    def _retrieve(self, collection: Collection, depth: int) -> Run:
        CountingBM25.depths.append(depth)
        return super()._retrieve(collection, depth)


def test_a_system_fused_into_a_hybrid_is_computed_once(adi: Collection) -> None:
    bm25 = CountingBM25()
    systems: list[RetrievalSystem] = [bm25, HybridSystem([bm25, BM25System()])]
    result = evaluate_systems(adi, systems)
    assert CountingBM25.depths == [CANDIDATES]  # deep enough for the hybrid's normalisation, computed once
    assert max(len(ranking) for ranking in bm25.retrieve(adi, 5).values()) == 5  # cut from the deep run
    assert CountingBM25.depths == [CANDIDATES]
    assert result.scores()["hybrid"] == pytest.approx(result.scores()["bm25"], abs=1e-9)
