"""The corpus vector cache: a hit skips encoding, a new fingerprint or corpus misses, damage is survived."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.ranking.beir import Collection, load_collection
from llara_rag.ranking.cache import VectorCache
from llara_rag.ranking.systems import DenseSystem, llara_system


class CountingEncoder:
    """Hashes words into a small normalised vector, counting the passages it encodes."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.passages_encoded = 0

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                vectors[row, sum(map(ord, word)) % 64] += 1
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-9)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(queries)

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray:
        self.passages_encoded += len(passages)
        return self._encode(passages)


@pytest.fixture
def adi(data_dir: Path) -> Collection:
    return load_collection(data_dir / "adi")


def system(encoder: CountingEncoder, cache: VectorCache, **settings: object) -> DenseSystem:
    return DenseSystem("fake", "fake", lambda: encoder, cache, settings=settings)


def test_second_run_with_the_same_fingerprint_is_a_hit(adi: Collection, tmp_path: Path) -> None:
    cache = VectorCache(tmp_path)
    first, second = CountingEncoder("f" * 16), CountingEncoder("f" * 16)
    run = system(first, cache).retrieve(adi, 100)
    assert first.passages_encoded == len(adi.doc_ids)
    assert len(list(tmp_path.glob("adi-*.npz"))) == 1
    assert system(second, cache).retrieve(adi, 100) == run
    assert second.passages_encoded == 0


def test_a_new_fingerprint_settings_or_corpus_misses(adi: Collection, tmp_path: Path) -> None:
    cache = VectorCache(tmp_path)
    system(CountingEncoder("a" * 16), cache).retrieve(adi, 10)
    changed = CountingEncoder("b" * 16)
    system(changed, cache).retrieve(adi, 10)
    assert changed.passages_encoded == len(adi.doc_ids)
    longer = CountingEncoder("a" * 16)
    system(longer, cache, passage_max_length=64).retrieve(adi, 10)
    assert longer.passages_encoded == len(adi.doc_ids)
    edited = Collection(
        adi.name, adi.split, adi.doc_ids, ("edited",) + adi.doc_texts[1:], adi.queries, adi.qrels
    )
    again = CountingEncoder("a" * 16)
    system(again, cache).retrieve(edited, 10)
    assert again.passages_encoded == len(adi.doc_ids)
    assert len(list(tmp_path.glob("adi-*.npz"))) == 4


def test_a_damaged_cache_file_is_re_encoded(adi: Collection, tmp_path: Path) -> None:
    cache = VectorCache(tmp_path)
    system(CountingEncoder("c" * 16), cache).retrieve(adi, 10)
    (path,) = tmp_path.glob("adi-*.npz")
    path.write_bytes(b"truncated")
    encoder = CountingEncoder("c" * 16)
    system(encoder, cache).retrieve(adi, 10)
    assert encoder.passages_encoded == len(adi.doc_ids)
    assert cache.load(path, adi.doc_ids) is not None
    assert cache.load(path, adi.doc_ids[::-1]) is None


def test_default_directory_is_under_the_package_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLARA_RAG_CACHE", str(tmp_path))
    assert VectorCache().directory == tmp_path / "vectors"


def test_llara_vectors_of_another_dtype_are_cached_apart(
    adi: Collection, tiny_backbone_dir: Path, tmp_path: Path
) -> None:
    """The fingerprint ignores dtype (a store accepts bf16 and fp32 vectors alike); the evaluation cache must
    not: a bf16 encoder's vectors scored as an fp32 encoder's moved a GPU figure by 0.002."""
    few = Collection(adi.name, adi.split, adi.doc_ids[:4], adi.doc_texts[:4], adi.queries, adi.qrels)
    cache = VectorCache(tmp_path)
    full = llara_system(EncoderConfig(model=str(tiny_backbone_dir)), cache)
    half = llara_system(EncoderConfig(model=str(tiny_backbone_dir), dtype="bfloat16"), cache)
    full_vectors, half_vectors = full.corpus_vectors(few), half.corpus_vectors(few)
    assert len(list(tmp_path.glob("adi-*.npz"))) == 2
    assert not np.array_equal(full_vectors, half_vectors)
    assert "dtype" not in full.describe()  # fp32 keys, and every cache made before, stay valid
    assert half.describe()["dtype"] == "bfloat16"


def test_a_lower_casing_encoder_shares_vectors_across_case_only(adi: Collection, tmp_path: Path) -> None:
    import dataclasses

    cache = VectorCache(tmp_path)
    shouted = dataclasses.replace(adi, doc_texts=tuple(text.upper() for text in adi.doc_texts))
    folding, cased = CountingEncoder("l" * 16), CountingEncoder("c" * 16)
    folding.lowercase = True  # type: ignore[attr-defined]
    system(folding, cache).retrieve(adi, 10)
    system(folding, cache).retrieve(shouted, 10)
    assert folding.passages_encoded == len(adi.doc_ids), "the upper-cased corpus reads as the same texts"
    system(cased, cache).retrieve(adi, 10)
    system(cased, cache).retrieve(shouted, 10)
    assert cased.passages_encoded == 2 * len(adi.doc_ids)
