"""The layout ARCHITECTURE.md draws: data flows one way, and no module imports its way back in a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llara_rag"

FORBIDDEN = {
    "llara_rag.training": (
        "llara_rag.evaluation",
        "llara_rag.indexing.store",
        "llara_rag.indexing.ingest",
        "llara_rag.serving",
    ),
    "llara_rag.ranking": (
        "llara_rag.evaluation",
        "llara_rag.training",
        "llara_rag.indexing.store",
        "llara_rag.serving",
    ),
    "llara_rag.evaluation": ("llara_rag.training", "llara_rag.indexing.store", "llara_rag.serving"),
    "llara_rag.encoding.encoder": (
        "llara_rag.indexing.store",
        "llara_rag.indexing.ingest",
        "llara_rag.retrieval.retriever",
        "llara_rag.training",
    ),
    "llara_rag.indexing.store": (
        "llara_rag.training",
        "llara_rag.evaluation",
        "llara_rag.serving",
        "llara_rag.chat.engine",
    ),
    "llara_rag.retrieval.retriever": (
        "llara_rag.training",
        "llara_rag.evaluation",
        "llara_rag.serving",
        "llara_rag.chat.engine",
    ),
    "llara_rag.indexing.distributed": (
        "llara_rag.training",
        "llara_rag.evaluation",
        "llara_rag.serving",
        "llara_rag.chat.engine",
    ),
}
"""Importer prefix -> prefixes it must not import: each flow reaches only downstream of itself."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def runtime_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports at run time, at module level or in a function (not for typing)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llara_rag"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("llara_rag"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in MODULES}


GRAPH = {name: runtime_imports(path) - {name} for name, path in MODULES.items()}


def test_no_module_imports_its_way_back_to_itself() -> None:
    def reaches(start: str) -> set[str]:
        seen, stack = set(), list(GRAPH[start])
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(GRAPH[name])
        return seen

    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    loops = sorted(name for name in GRAPH if name not in packages and name in reaches(name))
    assert not loops, f"import cycles through {loops}"


@pytest.mark.parametrize("importer", sorted(FORBIDDEN))
def test_each_flow_imports_only_downstream(importer: str) -> None:
    wrong = sorted(
        (name, target)
        for name, targets in GRAPH.items()
        if name == importer or name.startswith(f"{importer}.")
        for target in targets
        if target.startswith(FORBIDDEN[importer])
    )
    assert not wrong, f"{importer} imports what lies upstream of it: {wrong}"


def test_the_walk_sees_real_imports() -> None:
    assert "llara_rag.ranking.systems" in GRAPH["llara_rag.training.pairs"]
    assert "llara_rag.encoding.adapter" in GRAPH["llara_rag.encoding.encoder"]


def test_only_the_command_line_imports_the_command_line() -> None:
    wrong = sorted(
        (name, target)
        for name, targets in GRAPH.items()
        if not name.startswith("llara_rag.cli")
        for target in targets
        if target.startswith("llara_rag.cli")
    )
    assert not wrong, f"the library reaches up into the CLI: {wrong}"
    assert "llara_rag.cli.flags" in GRAPH["llara_rag.cli.training"]
