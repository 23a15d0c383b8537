"""Pages generated at build time (mkdocs-gen-files), so that they cannot go stale in git.

- `cli.md`: each `llara-rag` command's ``--help``, from the parser the command line itself builds;
- `changelog.md`: `CHANGELOG.md`;
- `benchmarks/results/`: every results page of `benchmarks/results/` and the images they show.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import mkdocs_gen_files

from llara_rag.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def command_help(*argv: str) -> str:
    """What ``llara-rag ARGV --help`` prints, at a fixed width so that the page does not depend on the terminal."""
    os.environ["COLUMNS"] = "100"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser(argv).parse_args([*argv, "--help"])
    return out.getvalue()


def cli_page() -> str:
    sections = [
        "# Command line",
        "Generated from the parsers of `llara-rag` at build time: what `llara-rag [COMMAND] --help` prints.",
        f"```text\n{command_help()}```",
    ]
    for name in COMMANDS:
        sections += [f"## {name}", f"```text\n{command_help(name)}```"]
    return "\n\n".join(sections) + "\n"


with mkdocs_gen_files.open("cli.md", "w") as page:
    page.write(cli_page())

with mkdocs_gen_files.open("changelog.md", "w") as page:
    page.write((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))

for source in sorted(RESULTS.rglob("*")):
    if source.suffix in {".md", ".png"}:
        with mkdocs_gen_files.open(f"benchmarks/results/{source.relative_to(RESULTS).as_posix()}", "wb") as page:
            page.write(source.read_bytes())
