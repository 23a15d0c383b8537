"""LangChain integration of llara-rag: LLaRA dense embeddings from a decoder-only LLM."""

from langchain_llara.embeddings import LLaRAEmbeddings

__all__ = ["LLaRAEmbeddings"]
