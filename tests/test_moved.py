"""The import paths of before the folders still work, warn naming the new path, and are the same objects."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

MOVED_MODULES = {
    "llara_rag.backbone": "llara_rag.encoding.backbone",
    "llara_rag.encoder": "llara_rag.encoding.encoder",
    "llara_rag.embedding": "llara_rag.encoding.embedding",
    "llara_rag.ingest": "llara_rag.indexing.ingest",
    "llara_rag.store": "llara_rag.indexing.store",
    "llara_rag.distributed": "llara_rag.indexing.distributed",
    "llara_rag.chroma_embedding": "llara_rag.indexing.chroma_embedding",
    "llara_rag.fusion": "llara_rag.retrieval.fusion",
    "llara_rag.generator": "llara_rag.chat.generator",
    "llara_rag.evaluation.baselines": "llara_rag.ranking.baselines",
}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_an_old_module_path_is_the_new_module_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}") as caught:
        __import__(old)  # as an import statement does
    assert sys.modules[old] is importlib.import_module(new)
    assert caught[0].filename == __file__  # the warning points at the importer's line


@pytest.mark.parametrize(
    ("package", "name", "home"),
    [
        ("llara_rag.retrieval", "open_retriever", "llara_rag.retrieval.retriever"),
        ("llara_rag.chat", "ChatConfig", "llara_rag.chat.engine"),
        ("llara_rag.chat", "open_chat_session", "llara_rag.cli.session"),
    ],
)
def test_a_name_of_a_module_that_became_a_package_is_found_where_it_moved(
    package: str, name: str, home: str
) -> None:
    module = importlib.import_module(package)
    vars(module).pop(name, None)
    with pytest.warns(DeprecationWarning, match=f"{package}.{name} moved to {home}.{name}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(module, name) is value  # warned once


def test_a_package_still_refuses_a_name_it_never_had() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        importlib.import_module("llara_rag.retrieval").nothing  # noqa: B018
