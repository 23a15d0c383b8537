"""The errors a user can cause, each naming the input and the way out."""

from __future__ import annotations


class LLaRAError(Exception):
    """Base class of every error llara-rag raises on purpose."""


class ModelNotFoundError(LLaRAError):
    """A model name or path that resolves to nothing loadable."""


class InvalidModelFileError(LLaRAError):
    """A file given as a model that is not what it claims to be (e.g. not a GGUF)."""


class AdapterError(LLaRAError):
    """An adapter directory that is missing, incomplete or made for another backbone."""


class InvalidInputError(LLaRAError, ValueError):
    """Text to embed that cannot be embedded meaningfully (empty, not a string)."""


class ModelMismatchError(LLaRAError):
    """An index built with one encoder opened with another."""


class DatasetError(LLaRAError):
    """A folder given as an evaluation collection that is not a readable BEIR-format collection."""


class StoreConnectionError(LLaRAError):
    """A Chroma server that cannot be reached."""


class CollectionNotFoundError(LLaRAError):
    """A collection asked for by name (e.g. to query) that was never indexed."""


class GeneratorError(LLaRAError):
    """A chat generator that cannot answer: not a chat model, or a prompt beyond its context window."""


class EmbeddingCollapseError(LLaRAError):
    """Training drove all embeddings to the same direction; the run stopped without writing an adapter."""


class LexicalIndexError(LLaRAError):
    """A collection searched in a mode that needs BM25 whose lexical index is missing or out of step."""


class DamagedStoreError(LLaRAError):
    """A file of the database folder (Chroma's database, an ingestion record) that cannot be read."""


class PublishError(LLaRAError):
    """An adapter that cannot be pushed to the Hub: no network, a bad repository name or token."""


class UnsupportedPrecisionError(LLaRAError):
    """A precision this machine cannot run, or one that contradicts the dtype asked for (not a ValueError,
    so a settings object passes it on as written rather than wrapping it)."""
