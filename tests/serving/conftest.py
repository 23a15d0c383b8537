"""Fixtures the service's tests share: the sample handbook indexed with the tiny chat model, and its embedding."""

from __future__ import annotations

from pathlib import Path

import pytest

from llara_rag.cli import main
from llara_rag.encoding.embedding import LLaRAEmbedding

SAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "sample_docs"


@pytest.fixture(scope="module")
def served_db(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model_dir: Path) -> Path:
    db = tmp_path_factory.mktemp("served-db")
    assert main(["index", str(SAMPLE_DOCS), "--db", str(db), "--model", str(tiny_chat_model_dir)]) == 0
    return db


@pytest.fixture(scope="module")
def embed_model(tiny_chat_model_dir: Path) -> LLaRAEmbedding:
    return LLaRAEmbedding(model_name=str(tiny_chat_model_dir))
