"""llara-rag: LLaRA dense retrieval for RAG, on an LLM adapted to your documents without labels."""

import importlib.metadata

from llara_rag.encoding.backbone import DEFAULT_MODEL
from llara_rag.encoding.encoder import EncoderConfig, LLaRAEncoder, get_encoder
from llara_rag.encoding.prompts import LLaRAPrompts
from llara_rag.errors import (
    AdapterError,
    InvalidInputError,
    InvalidModelFileError,
    LLaRAError,
    ModelMismatchError,
    ModelNotFoundError,
)

try:
    __version__ = importlib.metadata.version("llara-rag")
except importlib.metadata.PackageNotFoundError:  # the source tree on sys.path without an install
    __version__ = "unknown"

__all__ = [
    "DEFAULT_MODEL",
    "AdapterError",
    "EncoderConfig",
    "IngestConfig",
    "InvalidInputError",
    "InvalidModelFileError",
    "LLaRAEmbedding",
    "LLaRAEncoder",
    "LLaRAError",
    "LLaRAHybridRetriever",
    "LLaRAPrompts",
    "ModelMismatchError",
    "ModelNotFoundError",
    "RetrievalConfig",
    "StoreConfig",
    "get_encoder",
    "index_folder",
    "open_index",
    "open_retriever",
    "open_store",
]


_LAZY = {
    "LLaRAEmbedding": "llara_rag.encoding.embedding",
    "StoreConfig": "llara_rag.indexing.store",
    "open_store": "llara_rag.indexing.store",
    "open_index": "llara_rag.indexing.store",
    "IngestConfig": "llara_rag.indexing.ingest",
    "index_folder": "llara_rag.indexing.ingest",
    "LLaRAHybridRetriever": "llara_rag.retrieval.retriever",
    "RetrievalConfig": "llara_rag.retrieval.retriever",
    "open_retriever": "llara_rag.retrieval.retriever",
}


def __getattr__(name: str) -> object:
    """These import llama-index or chromadb; load them only when asked for, so `llara-rag --help` stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llara_rag' has no attribute {name!r}")
