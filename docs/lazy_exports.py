"""Griffe extension: the names a package exports lazily, documented where users import them.

`llara_rag/__init__.py` lists `LLaRAEmbedding`, `open_retriever`, ... in `__all__` but imports them on first
access (a module `__getattr__`), so `llara-rag --help` stays fast. Static analysis cannot see them; this
asks Python where each one is defined and adds it to the package as an alias, so the API reference names
`llara_rag.LLaRAEmbedding` and keeps working wherever the package moves the definition.
"""

from __future__ import annotations

from typing import Any

import griffe


class LazyExports(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for name in map(str, pkg.exports or ()):
            if name not in pkg.members:
                defined = griffe.dynamic_import(f"{pkg.path}.{name}")
                pkg.set_member(name, griffe.Alias(name, f"{defined.__module__}.{defined.__qualname__}"))
