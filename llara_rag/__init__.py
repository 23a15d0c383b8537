"""llara-rag: LLaRA dense retrieval for RAG, on an LLM adapted to your documents without labels."""

from llara_rag.backbone import DEFAULT_MODEL
from llara_rag.encoder import EncoderConfig, LLaRAEncoder, get_encoder
from llara_rag.errors import (
    AdapterError,
    InvalidInputError,
    InvalidModelFileError,
    LLaRAError,
    ModelMismatchError,
    ModelNotFoundError,
)
from llara_rag.prompts import LLaRAPrompts

__all__ = [
    "DEFAULT_MODEL",
    "AdapterError",
    "EncoderConfig",
    "InvalidInputError",
    "InvalidModelFileError",
    "LLaRAEmbedding",
    "LLaRAEncoder",
    "LLaRAError",
    "LLaRAPrompts",
    "ModelMismatchError",
    "ModelNotFoundError",
    "get_encoder",
]


def __getattr__(name: str) -> object:
    """LLaRAEmbedding imports llama-index; load it only when asked for, so `llara-rag --help` stays fast."""
    if name == "LLaRAEmbedding":
        from llara_rag.embedding import LLaRAEmbedding

        return LLaRAEmbedding
    raise AttributeError(f"module 'llara_rag' has no attribute {name!r}")
