"""The terminal chat: a streamed, cited answer, Ctrl-C, and `llara-rag chat` in a pseudo-terminal."""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.llms import MockLLM

from llara_rag.chat.generator import GeneratorConfig, LocalGenerator
from llara_rag.cli import main
from llara_rag.testing import build_tiny_backbone

SAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "sample_docs"


@pytest.fixture(autouse=True)
def _no_default_llm() -> None:
    Settings.llm = MockLLM()


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model_dir: Path) -> Path:
    """The sample folder indexed by `llara-rag index` with the tiny model."""
    db = tmp_path_factory.mktemp("chat-db")
    assert main(["index", str(SAMPLE_DOCS), "--db", str(db), "--model", str(tiny_chat_model_dir)]) == 0
    return db


def _index(embedding_dir: Path) -> VectorStoreIndex:
    from llama_index.core import SimpleDirectoryReader

    from llara_rag.encoding.embedding import LLaRAEmbedding

    documents = SimpleDirectoryReader(str(SAMPLE_DOCS)).load_data()
    return VectorStoreIndex.from_documents(documents, embed_model=LLaRAEmbedding(str(embedding_dir)))


class Recorder(io.StringIO):
    """An output that remembers each write, to tell a streamed answer from one printed at once."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _lines(*lines: str) -> Iterator[str]:
    yield from lines


def test_session_streams_an_answer_cites_its_sources_and_resets(
    tiny_chat_model_dir: Path, tiny_generator: LocalGenerator
) -> None:
    from llara_rag.chat.engine import build_chat_engine
    from llara_rag.cli.session import ChatSession

    engine = build_chat_engine(_index(tiny_chat_model_dir).as_retriever(similarity_top_k=3), tiny_generator)
    script = _lines("how fast is a page acknowledged?", "/sources", "/nonsense", "/reset")
    history_before_reset = []

    def read(prompt: str) -> str:
        line = next(script, None)
        if line is None:
            raise EOFError
        if line == "/reset":
            history_before_reset.extend(engine.chat_history)
        return line

    output = Recorder()
    session = ChatSession(engine, cancel=tiny_generator.cancel, read=read, output=output)
    assert session.run() == 0

    text = output.getvalue()
    answer_writes = output.writes[output.writes.index("assistant> ") + 1 : -1]
    answer_writes = answer_writes[: next(i for i, w in enumerate(answer_writes) if w.startswith("Sources:"))]
    assert len([w for w in answer_writes if w.strip()]) > 1, "the answer was not streamed"
    assert "Sources: [1] " in text and ".md" in text
    assert len(session.last_sources) == 0  # cleared by /reset
    assert "Retrieved for: how fast is a page acknowledged?" in text  # /sources, first turn: no condensing
    assert "Unknown command '/nonsense'" in text
    assert [m.role.value for m in history_before_reset] == ["user", "assistant"]
    assert engine.chat_history == []
    assert "(conversation cleared)" in text and text.rstrip().endswith("bye")


def test_ctrl_c_during_an_answer_stops_it_and_keeps_the_session(tiny_chat_model_dir: Path) -> None:
    from llara_rag.chat.engine import build_chat_engine
    from llara_rag.cli.session import ChatSession

    generator = LocalGenerator(GeneratorConfig(model=str(tiny_chat_model_dir), max_new_tokens=300))
    engine = build_chat_engine(_index(tiny_chat_model_dir).as_retriever(similarity_top_k=1), generator)
    script = _lines("what is a chunk?")

    class CtrlCOnFirstPiece(Recorder):
        def write(self, text: str) -> int:
            if self.writes and self.writes[-1] == "assistant> ":
                signal.raise_signal(signal.SIGINT)
            return super().write(text)

    def read(prompt: str) -> str:
        line = next(script, None)
        if line is None:
            raise EOFError
        return line

    output = CtrlCOnFirstPiece()
    assert ChatSession(engine, cancel=generator.cancel, read=read, output=output).run() == 0
    text = output.getvalue()
    assert " [stopped]\nSources: [1] " in text and text.rstrip().endswith("bye")
    remembered = engine.chat_history[-1].content  # all that was generated, printed or not
    assert len(generator.tokenizer(remembered)["input_ids"]) < 50  # uncancelled, this model writes 300


def test_ctrl_c_at_the_prompt_ends_the_session(tiny_chat_model_dir: Path) -> None:
    from llara_rag.cli.session import ChatSession

    def interrupt(prompt: str) -> str:
        raise KeyboardInterrupt

    output = io.StringIO()
    assert ChatSession(engine=None, read=interrupt, output=output).run() == 0  # type: ignore[arg-type]
    assert output.getvalue().rstrip().endswith("bye")


def test_chat_refuses_an_index_built_with_another_model(
    sample_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = build_tiny_backbone(tmp_path / "other-model", hidden_size=48)
    assert main(["chat", "--db", str(sample_db), "--model", str(other), "--generator", str(other)]) == 2
    error = capsys.readouterr().err
    assert "was indexed with" in error and "--model" in error


def test_cli_chat_in_a_pseudo_terminal(sample_db: Path, tiny_chat_model_dir: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    command = [
        "-m",
        "llara_rag.cli",
        "chat",
        "--db",
        str(sample_db),
        "--model",
        str(tiny_chat_model_dir),
        "--generator",
        str(tiny_chat_model_dir),
        "--max-new-tokens",
        "8",
    ]
    child = pexpect.spawn(sys.executable, command, encoding="utf-8", timeout=120)
    try:
        child.expect_exact("you> ")
        child.sendline("can i deploy on a monday?")
        child.expect(r"assistant> (.+?)\r?\nSources: \[1\] \S+\.md, chunk \d+")
        assert child.match.group(1).strip()
        child.expect_exact("you> ")
        child.sendline("/reset")
        child.expect_exact("(conversation cleared)")
        child.expect_exact("you> ")
        child.sendeof()
        child.expect_exact("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
