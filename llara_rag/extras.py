"""Optional dependencies: a feature whose extra is not installed says, in one line, which extra adds it."""

from __future__ import annotations

import importlib
from types import ModuleType

from llara_rag.errors import LLaRAError


class MissingExtraError(LLaRAError, ModuleNotFoundError):
    """A feature used without the optional dependencies that its extra installs."""


STORE = "store"
"""The extra of collections: Chroma, its LlamaIndex store, and BM25 (bm25s, PyStemmer) for lexical search."""


def missing_extra(module: str, extra: str) -> MissingExtraError:
    return MissingExtraError(
        f"{module.partition('.')[0]} is not installed; `pip install 'llara-rag[{extra}]'` adds it."
    )


def require(module: str, extra: str) -> ModuleType:
    """Imports ``module``, which ``pip install 'llara-rag[extra]'`` provides."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise missing_extra(module, extra) from error
