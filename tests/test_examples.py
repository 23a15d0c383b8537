"""Every example runs to completion on the sample folder, with the tiny model as embedder and generator.

The examples run in this process (``runpy``), as ``python examples/NAME.py ...`` would run them, so the
interpreter start and the library imports are paid once for all of them.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from llama_index.core import Settings
from llama_index.core.llms import MockLLM

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE_FILES = sorted(path.name for path in (EXAMPLES / "sample_docs").iterdir())


@pytest.fixture(autouse=True)
def _no_default_llm() -> None:
    Settings.llm = MockLLM()


def run_example(name: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.fixture
def tiny(tiny_chat_model_dir: Path) -> list[str]:
    return [
        "--model",
        str(tiny_chat_model_dir),
        "--generator",
        str(tiny_chat_model_dir),
        "--max-new-tokens",
        "6",
    ]


def test_sample_folder_is_a_handful_of_short_documents() -> None:
    words = {name: len((EXAMPLES / "sample_docs" / name).read_text().split()) for name in SAMPLE_FILES}
    assert 6 <= len(words) <= 10
    assert all(150 <= count <= 400 for count in words.values()), words


@pytest.mark.parametrize(
    "name", ["chat_with_your_docs.py", "adapt_then_chat.py", "query_engine.py", "hybrid_retrieval.py"]
)
def test_readme_gives_the_command_of_each_example(name: str) -> None:
    assert f"python examples/{name}" in (EXAMPLES / "README.md").read_text()


def test_chat_with_your_docs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_example(
        "chat_with_your_docs.py", monkeypatch, "--db", str(tmp_path / "db"), "--mode", "hybrid", *tiny
    )
    out = capsys.readouterr().out
    assert f"added {len(SAMPLE_FILES)}" in out
    assert out.count("assistant> ") == 3 and out.count("Sources: [1] ") == 3


@pytest.mark.slow
def test_chat_with_your_docs_answers_its_three_questions_from_the_handbook(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command, with the real default model: quoted answers, right and the same each run."""
    run_example("chat_with_your_docs.py", monkeypatch, "--db", str(tmp_path / "db"))
    answers = [part.split("\nSources: ")[0] for part in capsys.readouterr().out.split("assistant> ")[1:]]
    assert len(answers) == 3
    assert "acknowledged within 5 minutes" in answers[0]
    assert "PagerDuty escalates to the secondary" in answers[1]
    assert "There are no deploys on Fridays" in answers[2]


def test_chat_example_keeps_one_database_per_folder(tmp_path: Path) -> None:
    """Chatting with your notes after the sample must not cite the sample handbook."""
    default_db = runpy.run_path(str(EXAMPLES / "chat_with_your_docs.py"))["default_db"]
    notes = tmp_path / "notes"
    assert default_db(notes, "f1") == default_db(tmp_path / "x" / ".." / "notes", "f1")
    assert default_db(notes, "f1") != default_db(EXAMPLES / "sample_docs", "f1")
    assert default_db(notes, "f1") != default_db(notes, "f2"), (
        "a new default encoder must not meet the old vectors"
    )


def test_query_engine(
    monkeypatch: pytest.MonkeyPatch, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_example("query_engine.py", monkeypatch, "Who approves a client dinner?", *tiny)
    cited = [
        line.removeprefix("  - ") for line in capsys.readouterr().out.splitlines() if line.startswith("  - ")
    ]
    assert len(cited) == 3 and set(cited) <= set(SAMPLE_FILES)


def test_hybrid_retrieval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_example("hybrid_retrieval.py", monkeypatch, "Which app books a desk?", "--db", str(tmp_path), *tiny)
    out = capsys.readouterr().out
    rankings = {
        line.split(":")[0].strip(): line.split(":", 1)[1] for line in out.splitlines() if ": " in line
    }
    assert {"lexical", "dense", "hybrid", "answer"} <= set(rankings)
    # the file where "desk" and "book" are most frequent, found by BM25 first
    assert rankings["lexical"].startswith(" office_equipment.md (lexical #1)")
    assert "(dense #" in rankings["dense"] and "lexical #" not in rankings["dense"]
    assert "lexical #" in rankings["hybrid"] and "dense #" in rankings["hybrid"]


def test_adapt_then_chat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_example(
        "adapt_then_chat.py",
        monkeypatch,
        "--workdir",
        str(tmp_path),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        *tiny,
    )
    out = capsys.readouterr().out
    assert "before adaptation: the answer's file ranked first for" in out
    assert "after adaptation: the answer's file ranked first for" in out
    assert (tmp_path / "adapter").is_dir()
    assert "Sources: [1] " in out
