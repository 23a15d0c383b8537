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
