"""A question to ranked chunks: dense, lexical or hybrid (the fusion), over an indexed collection.

The retriever's names were importable from here when this was one module; they still are, with a warning.
"""

from llara_rag.moved import moved_names

_RETRIEVER = "llara_rag.retrieval.retriever"

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        (
            "BOOKKEEPING_KEYS",
            "FOUND_BY_KEY",
            "SIDES",
            "Hit",
            "LLaRAHybridRetriever",
            "RetrievalConfig",
            "check_question",
            "chroma_where",
            "chunk_number",
            "open_retriever",
            "search",
            "source_label",
            "why_no_results",
        ),
        _RETRIEVER,
    ),
)
