"""The terminal chat of ``llara-rag chat``: read a question, stream the cited answer, Ctrl-C to stop it.

A terminal loop with SIGINT handling belongs to the command line; the engine it drives is
:mod:`llara_rag.chat.engine`, usable without a terminal.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from llara_rag.chat.engine import ChatConfig, Citation, answer_mode, build_chat_engine, cite

if TYPE_CHECKING:
    from llama_index.core.chat_engine.types import BaseChatEngine

    from llara_rag.chat.generator import GeneratorConfig
    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.indexing.store import StoreConfig

HELP = (
    "Ask a question about the indexed documents. Commands: /sources shows the excerpts behind the last "
    "answer, /reset starts a new conversation, /help shows this, /exit (or Ctrl-D) quits. "
    "Ctrl-C stops an answer; at the prompt it quits."
)


class ChatSession:
    """The read-answer-cite loop of ``llara-rag chat``: streamed answers, sources under each one.

    ``cancel`` stops a generation in flight (``LocalGenerator.cancel``), so Ctrl-C during an answer
    returns to the prompt; without it, Ctrl-C anywhere ends the session.
    """

    def __init__(
        self,
        engine: BaseChatEngine,
        *,
        cancel: Callable[[], None] | None = None,
        read: Callable[[str], str] = input,
        output: TextIO | None = None,
        excerpt_chars: int = 400,
    ) -> None:
        self.engine = engine
        self.cancel = cancel
        self.read = read
        self.output = output or sys.stdout  # resolved per session, not pinned at import
        self.excerpt_chars = excerpt_chars
        self.last_sources: list[Citation] = []
        self.last_search = ""
        self._interrupted = False

    def _say(self, text: str = "", end: str = "\n") -> None:
        self.output.write(text + end)
        self.output.flush()

    def _interrupt(self, *_: object) -> None:
        self._interrupted = True
        if self.cancel is not None:
            self.cancel()

    @contextmanager
    def _ctrl_c_stops_the_answer(self) -> Iterator[None]:
        """While an answer is written, Ctrl-C cancels the generation instead of raising mid-stream.

        Raising would unwind through LlamaIndex's stream, which waits for its writer thread, which
        waits for the generator: the answer would have to finish before the prompt came back.
        """
        if self.cancel is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def ask(self, question: str) -> list[Citation]:
        """Streams the answer to ``question``, then lists its sources; returns them."""
        self._interrupted = False
        with self._ctrl_c_stops_the_answer():
            response = self.engine.stream_chat(question)
            self.last_sources = cite(response.source_nodes)
            self.last_search = (
                str(response.sources[0].raw_input.get("message", "")) if response.sources else ""
            )
            for delta in response.response_gen:
                if self._interrupted:
                    self._interrupt()  # the answer's generation may have started after the Ctrl-C
                    continue
                self._say(delta, end="")
        self._say(" [stopped]" if self._interrupted else "")
        if self.last_sources:
            self._say("Sources: " + "; ".join(citation.label for citation in self.last_sources))
        else:
            self._say("Sources: none (the index returned no chunks)")
        return self.last_sources

    def show_sources(self) -> None:
        if not self.last_sources:
            self._say("No answer yet.")
            return
        if self.last_search:
            self._say(f"Retrieved for: {self.last_search.strip()}")
        for citation in self.last_sources:
            excerpt = " ".join(citation.text.split())
            if len(excerpt) > self.excerpt_chars:
                excerpt = excerpt[: self.excerpt_chars].rstrip() + " ..."
            self._say(f"{citation.label}\n    {excerpt}")

    def run(self) -> int:
        """Answers until end of input, ``/exit`` or Ctrl-C at the prompt; returns the exit status."""
        self._say(HELP)
        while True:
            try:
                line = self.read("\nyou> ").strip()
            except (EOFError, KeyboardInterrupt):
                self._say("\nbye")
                return 0
            if not line:
                continue
            if line in ("/exit", "/quit"):
                self._say("bye")
                return 0
            if line == "/reset":
                self.engine.reset()
                self.last_sources = []
                self.last_search = ""
                self._say("(conversation cleared)")
            elif line == "/sources":
                self.show_sources()
            elif line == "/help":
                self._say(HELP)
            elif line.startswith("/"):
                self._say(f"Unknown command {line!r}. {HELP}")
            else:
                self._say("assistant> ", end="")
                try:
                    self.ask(line)
                except KeyboardInterrupt:  # only without ``cancel``: the answer cannot be stopped alone
                    self._say("\nbye")
                    return 0


def open_chat_session(
    store: StoreConfig,
    embed_model: LLaRAEmbedding,
    generator: GeneratorConfig,
    config: ChatConfig | None = None,
) -> ChatSession:
    """A terminal chat over an indexed collection, answered by ``generator`` or by quotes (``config.answer``).

    The collection (and, for a mode that needs it, its lexical index) is opened first, so one indexed
    with another encoder, or without a lexical index, is refused before the generator spends seconds loading.
    """
    from llara_rag.chat.generator import load_generator
    from llara_rag.retrieval.retriever import open_retriever

    config = config or ChatConfig()
    retriever = open_retriever(store, embed_model, config.retrieval)
    llm = load_generator(generator) if answer_mode(config, generator) == "generate" else None
    engine = build_chat_engine(retriever, llm, config, embed_model.encoder)
    return ChatSession(engine, cancel=getattr(llm, "cancel", None))
