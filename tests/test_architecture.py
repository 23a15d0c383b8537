"""The layout ARCHITECTURE.md draws: each folder imports only from the folders below it, and no module
imports its way back to itself, not even for type annotations."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llara_rag"

BASE = ("errors", "extras", "settings", "moved")
"""Top-level modules everything may use: the errors a user can cause, optional extras, the settings base."""

MAY_IMPORT = {
    "encoding": (),
    "indexing": ("encoding",),
    "retrieval": ("encoding", "indexing"),
    "chat": ("encoding", "indexing", "retrieval"),
    "ranking": ("encoding", "indexing.lexical", "retrieval.fusion"),
    "evaluation": ("encoding", "retrieval.fusion", "ranking"),
    "training": (
        "encoding",
        "indexing.documents",
        "indexing.lexical",
        "retrieval.fusion",
        "ranking",
        "chat.generator",
    ),
    "serving": ("encoding", "indexing", "retrieval", "chat"),
    "testing": ("encoding",),
}
"""Folder (or top-level module) -> what it may import besides itself and ``BASE``: the one-way flow.
Training reads documents and BM25 but never a collection; measuring never reaches training or the store;
only ``cli`` composes flows (``--eval-data`` hands an ``evaluation`` scorer to a trainer)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path, *, typing: bool) -> set[str]:
    """The package modules ``path`` imports, at module level or in a function; with ``typing``, also those
    imported only for annotations (under ``if TYPE_CHECKING:``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
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


GRAPH = {name: imports(path, typing=False) - {name} for name, path in MODULES.items()}
TYPED_GRAPH = {name: imports(path, typing=True) - {name} for name, path in MODULES.items()}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), list(graph[start])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(graph[name])
    return seen


@pytest.mark.parametrize("graph", [GRAPH, TYPED_GRAPH], ids=["at-run-time", "for-typing-too"])
def test_no_module_imports_its_way_back_to_itself(graph: dict[str, set[str]]) -> None:
    loops = sorted(name for name in graph if name not in PACKAGES and name in reaches(graph, name))
    assert not loops, f"import cycles through {loops}"


def part(name: str) -> str:
    """``llara_rag.indexing.store`` -> ``indexing.store``."""
    return name.removeprefix("llara_rag.")


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_each_folder_imports_only_downstream(folder: str) -> None:
    allowed = (folder, *BASE, *MAY_IMPORT[folder])
    wrong = sorted(
        (part(name), part(target))
        for name, targets in TYPED_GRAPH.items()
        if part(name) == folder or part(name).startswith(f"{folder}.")
        for target in targets
        if not any(part(target) == prefix or part(target).startswith(f"{prefix}.") for prefix in allowed)
    )
    assert not wrong, f"{folder} imports what lies upstream of it: {wrong}"


TRAINING_LAYERS = ("data", "losses", "trainer interpolation", "contrastive", "supervised unsupervised")
"""Inside training, bottom up: what it reads, the losses, the trainer, the stage both recipes run, them."""


def test_training_runs_from_data_up_to_the_recipes() -> None:
    def layer(name: str) -> int:
        inner = part(name).removeprefix("training.").partition(".")[0]
        return next(index for index, names in enumerate(TRAINING_LAYERS) if inner in names.split())

    modules = [name for name in TYPED_GRAPH if part(name).startswith("training.")]
    wrong = sorted(
        (part(name), part(target))
        for name in modules
        for target in TYPED_GRAPH[name]
        if target in modules and layer(target) > layer(name)
    )
    assert not wrong, f"training imports upwards: {wrong}"


def test_every_folder_has_a_rule() -> None:
    folders = {part(name).partition(".")[0] for name in PACKAGES if name != "llara_rag"}
    assert folders - set(MAY_IMPORT) == {"cli"}, (
        "a new folder needs its place in MAY_IMPORT and ARCHITECTURE.md"
    )


def test_the_base_imports_nothing_above_it() -> None:
    wrong = sorted(
        (part(name), part(target))
        for name in (f"llara_rag.{module}" for module in BASE)
        for target in TYPED_GRAPH[name]
        if part(target) not in BASE
    )
    assert not wrong


def test_the_walk_sees_real_imports() -> None:
    assert "llara_rag.ranking.systems" in GRAPH["llara_rag.training.data.pairs"]
    assert "llara_rag.encoding.adapter" in GRAPH["llara_rag.encoding.encoder"]
    assert (
        "llara_rag.encoding.embedding"
        in TYPED_GRAPH["llara_rag.indexing.store"] - GRAPH["llara_rag.indexing.store"]
    )


def test_only_the_command_line_imports_the_command_line() -> None:
    wrong = sorted(
        (name, target)
        for name, targets in TYPED_GRAPH.items()
        if not name.startswith("llara_rag.cli")
        for target in targets
        if target.startswith("llara_rag.cli")
    )
    assert not wrong, f"the library reaches up into the CLI: {wrong}"
    assert "llara_rag.cli.flags" in GRAPH["llara_rag.cli.training"]
