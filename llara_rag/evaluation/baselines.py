"""Moved to :mod:`llara_rag.ranking.baselines` (training's hybrid teacher uses MiniLM as well)."""

from llara_rag.moved import alias_module

alias_module(__name__, "llara_rag.ranking.baselines")
