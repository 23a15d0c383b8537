"""The top level of `llara-rag`: its version, and a help text that tells a user what the tool is for."""

from __future__ import annotations

import importlib.metadata

import pytest

from llara_rag.cli import main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"llara-rag {importlib.metadata.version('llara-rag')}"


def test_help_says_what_the_tool_does_and_where_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["-h"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Search a folder of documents by meaning" in help_text
    assert "Start with `llara-rag index DOCS`" in help_text
    assert "heavy imports" not in help_text


def test_the_top_level_help_loads_no_model_library() -> None:
    """Generated options are built only for the command being run: `llara-rag --help` stays fast."""
    import subprocess
    import sys

    code = (
        "import sys; from llara_rag.cli import build_parser; build_parser(['--help']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'llama_index'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
