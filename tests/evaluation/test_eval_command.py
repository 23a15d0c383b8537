"""`llara-rag eval` end to end on adi with the tiny backbone: table, JSON, PNG, cache reuse, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llara_rag.cli import main

SYSTEMS = ["bm25", "raw-llm", "llara", "hybrid"]


def test_eval_writes_table_json_and_chart_then_reuses_vectors(
    data_dir: Path,
    tiny_backbone_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = [
        "eval",
        str(data_dir / "adi"),
        "--model",
        str(tiny_backbone_dir),
        "--baselines",
        "bm25,raw-llm,hybrid",
        "--output",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| system | nDCG@10 | Recall@100 | MRR@10 | MAP@100 |" in table
    assert "| BM25 |" in table and "| LLaRA " in table and "Best nDCG@10 on adi: BM25" in table

    report = json.loads((tmp_path / "out" / "adi.json").read_text())
    assert [system["name"] for system in report["systems"]] == SYSTEMS
    assert report["documents"] == 82 and report["queries"] == 35
    scores = {system["name"]: system["metrics"] for system in report["systems"]}
    assert scores["bm25"]["nDCG@10"] == pytest.approx(0.483, abs=0.01)
    assert all(0 <= value <= 1 for metrics in scores.values() for value in metrics.values())
    assert (tmp_path / "out" / "adi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "cache").glob("adi-*.npz"))) == 2

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert caplog.text.count("Loaded cached corpus vectors") == 2
    assert json.loads((tmp_path / "out" / "adi.json").read_text())["systems"][0]["metrics"] == scores["bm25"]


def test_eval_on_a_folder_that_is_not_beir_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path), "--baselines", "bm25"]) == 2
    error = capsys.readouterr().err
    assert "is not a BEIR-format collection" in error and "Traceback" not in error


def test_eval_rejects_unknown_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "somewhere", "--baselines", "bm25,colbert"])
    assert exit_info.value.code == 2
    assert "unknown system colbert" in capsys.readouterr().err
