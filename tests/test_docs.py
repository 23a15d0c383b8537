"""The README and the docs site agree with the repository: links resolve, pages are reachable, figures match.

The site is built with warnings as errors (its own links and anchors, the API and CLI pages); the other
tests check what the build cannot see.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_docs_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    # Not --quiet: it hides the warnings --strict counts. MkDocs 1.x's plugins print notices about a future
    # MkDocs 2 unless told not to.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def relative_links(markdown: str) -> list[str]:
    """The link targets that name a file of the repository (no scheme, no bare anchor), without anchors."""
    targets = (target.split("#")[0] for target in LINK.findall(markdown))
    return [target for target in targets if target and ":" not in target]


def nav_pages(nav: list) -> set[str]:
    pages: set[str] = set()
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages |= nav_pages(value) if isinstance(value, list) else {value}
    return pages


def table_rows(markdown: str, header: str) -> list[str]:
    """The data rows of the table whose header row starts with ``header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_every_relative_link_of_the_readme_resolves() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [target for target in relative_links(readme) if not (ROOT / target).exists()]
    assert relative_links(readme) and not missing, f"README.md links to missing files: {missing}"


def test_every_docs_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    generated = {"cli.md", "changelog.md"}  # written by docs/gen_pages.py at build time
    assert pages - nav_pages(config["nav"]) == set(), "add these pages to mkdocs.yml's nav"
    assert nav_pages(config["nav"]) - pages == generated, "the nav names a page nothing provides"


def test_the_benchmarks_page_lists_every_result() -> None:
    listed = set(relative_links((DOCS / "benchmarks.md").read_text(encoding="utf-8")))
    results = {f"benchmarks/results/{path.name}" for path in (ROOT / "benchmarks" / "results").glob("*.md")}
    assert results - listed == set(), "docs/benchmarks.md: add a line for each new results page"
    assert listed - results - {"eval.md"} == set(), "docs/benchmarks.md links to results that do not exist"


@pytest.mark.parametrize("page", ["README.md", "docs/default-adapter.md"])
def test_the_results_table_quotes_the_default_adapters_benchmark(page: str) -> None:
    """Each cell is benchmarks/results/default.json's nDCG@10: a re-measured default updates both tables."""
    measured = json.loads((ROOT / "benchmarks" / "results" / "default.json").read_text(encoding="utf-8"))
    header = "| collection | BM25 | MiniLM | MiniLM + BM25 | bare backbone | **default** | default + BM25 |"
    systems = ("bm25", "minilm", "minilm-hybrid", "llara-base", "llara", "hybrid")
    expected = {
        result["collection"]: [
            f"{metrics['nDCG@10']:.3f}"
            for name in systems
            for metrics in [next(s["metrics"] for s in result["systems"] if s["name"] == name)]
        ]
        for result in measured["results"]
    }
    rows = table_rows((ROOT / page).read_text(encoding="utf-8"), header)
    quoted = {cells[0]: [cell.strip("*") for cell in cells[1:]] for cells in map(table_cells, rows)}
    assert quoted == expected, f"{page}: its table differs from benchmarks/results/default.json"


def table_cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("|").split("|")]
