"""Moved to :mod:`llara_rag.chat.generator`; this old path warns and goes in the next release."""

from llara_rag.moved import alias_module

alias_module(__name__, "llara_rag.chat.generator")
