"""The core's tiny random backbone, built once for these tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llara_rag.testing import build_tiny_backbone

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-llama"))
