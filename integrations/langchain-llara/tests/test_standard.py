"""LangChain's own standard test suites for embeddings, run on the tiny random backbone."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from langchain_llara import LLaRAEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from llara_rag.testing import build_tiny_backbone


@cache
def tiny_backbone() -> str:
    """Built once per session: the standard classes take their parameters from a property, not a fixture."""
    return str(build_tiny_backbone(Path(tempfile.mkdtemp(prefix="llara-langchain-")) / "tiny"))


class TinyLLaRA:
    """What both suites build: LLaRAEmbeddings on the tiny backbone."""

    @property
    def embeddings_class(self) -> type[LLaRAEmbeddings]:
        return LLaRAEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_name": tiny_backbone()}


class TestLLaRAEmbeddingsUnit(TinyLLaRA, EmbeddingsUnitTests):
    pass


class TestLLaRAEmbeddingsIntegration(TinyLLaRA, EmbeddingsIntegrationTests):
    pass
