"""LlamaHub entry point for llara-rag's embedding; the class itself lives in (and is kept by) the core."""

from llara_rag.encoding.embedding import LLaRAEmbedding

__all__ = ["LLaRAEmbedding"]
