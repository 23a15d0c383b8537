"""Domain whitening: what the fit removes and keeps, its file, and the encoder applying it."""

from __future__ import annotations

import numpy as np
import pytest

from llara_rag.encoding.adapter import WHITENING_FILE
from llara_rag.encoding.whitening import Whitening, default_dimensions, fit_whitening
from llara_rag.errors import AdapterError


def _anisotropic(count: int, dimension: int, seed: int) -> np.ndarray:
    """Unit vectors sharing one dominant direction, as LLaRA passages of one domain do."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, dimension)) * np.linspace(1.0, 0.1, dimension)
    vectors = 3.0 * np.eye(dimension)[0] + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _mean_cosine(vectors: np.ndarray) -> float:
    similarity = vectors @ vectors.T
    return float((similarity.sum() - np.trace(similarity)) / (len(vectors) * (len(vectors) - 1)))


def test_fit_removes_the_shared_direction_and_decorrelates():
    passages, queries = _anisotropic(400, 16, seed=0), _anisotropic(300, 16, seed=1)
    whitening = Whitening.fit(passages, queries, dimensions=8)
    assert _mean_cosine(passages) > 0.5
    assert abs(_mean_cosine(whitening(passages, "passage"))) < 0.02
    projected = (passages - whitening.passage_mean) @ whitening.projection
    np.testing.assert_allclose(np.cov(projected.T), np.eye(8), atol=1e-3)
    out = whitening(queries, "query")
    assert out.shape == (300, 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_fit_keeps_the_directions_of_largest_variance():
    rng = np.random.default_rng(0)
    scales = np.array([5.0, 0.1, 3.0, 0.1, 0.1, 1.0])
    passages = rng.standard_normal((2000, 6)) * scales
    whitening = Whitening.fit(passages, passages, dimensions=3)
    kept = np.abs(whitening.projection).argmax(axis=0)
    assert list(kept) == [0, 2, 5]
    with pytest.raises(ValueError, match="Cannot keep"):
        Whitening.fit(passages, passages, dimensions=7)


def test_file_round_trip_and_bad_files(tmp_path):
    whitening = Whitening.fit(_anisotropic(100, 8, 0), _anisotropic(50, 8, 1), dimensions=4)
    assert Whitening.load(tmp_path) is None
    whitening.save(tmp_path)
    loaded = Whitening.load(tmp_path)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.projection, whitening.projection)
    np.testing.assert_array_equal(loaded.query_mean, whitening.query_mean)
    (tmp_path / WHITENING_FILE).write_bytes(b"not safetensors")
    with pytest.raises(AdapterError, match="delete it"):
        Whitening.load(tmp_path)


def test_too_few_texts_fit_nothing(caplog):
    assert default_dimensions(576) == 144
    with caplog.at_level("WARNING"):
        texts = ["one text", "two texts", " "]
        assert fit_whitening(None, texts, dimensions=2) is None  # type: ignore[arg-type]
    assert "too few for 2 directions" in caplog.text
