"""Shared fixtures: a tiny random Llama with a locally built tokenizer, and the shared BEIR data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llara_rag.chat.generator import LocalGenerator
from llara_rag.testing import build_tiny_backbone, chroma_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"the shared BEIR collections are not at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Chroma server: ``$LLARA_RAG_TEST_CHROMA_URL`` when set (CI may start its own), else a fresh
    ``chroma run`` on a free loopback port, stopped when the session ends."""
    if url := os.environ.get("LLARA_RAG_TEST_CHROMA_URL"):
        yield url
        return
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> answer : {% endif %}"
)


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama with a chat template, so it can stand in for the local generator."""
    from transformers import AutoTokenizer

    path = build_tiny_backbone(tmp_path_factory.mktemp("tiny-chat"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_generator(tiny_chat_model_dir: Path) -> LocalGenerator:
    from llara_rag.chat.generator import GeneratorConfig

    return LocalGenerator(GeneratorConfig(model=str(tiny_chat_model_dir), max_new_tokens=12))
