"""Answers from an index: the generators, grounded (quoted) answers, and the cited chat engine.

The chat module's names were importable from here when this was one module; they still are, with a
warning. The terminal session moved to the command line (:mod:`llara_rag.cli.session`).
"""

from llara_rag.moved import moved_names

_ENGINE = "llara_rag.chat.engine"

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        (
            "CONTEXT_PROMPT",
            "DEFAULT_SYSTEM_PROMPT",
            "AnswerMode",
            "ChatConfig",
            "Citation",
            "answer_mode",
            "build_chat_engine",
            "chat_memory",
            "cite",
        ),
        _ENGINE,
    )
    | dict.fromkeys(("HELP", "ChatSession", "open_chat_session"), "llara_rag.cli.session"),
)
