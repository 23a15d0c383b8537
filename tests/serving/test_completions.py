"""`POST /v1/chat/completions` through the `openai` client against a live server on the loopback, and
`llara-rag chat --generator openai:URL` answered by that server."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from llama_index.core.llms import MockLLM

from llara_rag.chat.engine import ChatConfig
from llara_rag.chat.grounded import ExtractConfig
from llara_rag.cli import main
from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.indexing.store import StoreConfig
from llara_rag.retrieval.retriever import RetrievalConfig
from llara_rag.serving import ServiceConfig, create_app

ANSWER_TOKENS = 6
KEY = "s3cret-key-0123456789"


def _serve(app: FastAPI) -> Iterator[str]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server(embed_model: LLaRAEmbedding, served_db: Path) -> Iterator[str]:
    """The service generating with a mock LLM (its answers are ``text`` six times), key required."""
    app = create_app(
        embed_model,
        ServiceConfig(api_key=KEY),
        store=StoreConfig(path=served_db),
        llm=MockLLM(max_tokens=ANSWER_TOKENS),
    )
    yield from _serve(app)


def test_openai_client_chats_with_the_collection_streamed_or_not(live_server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key=KEY, max_retries=0)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "how fast is a page acknowledged?"},
        {"role": "assistant", "content": "within minutes"},
        {"role": "user", "content": "and a SEV2 page?"},
    ]
    completion = client.chat.completions.create(model="any", messages=messages)  # type: ignore[arg-type]
    text = completion.choices[0].message.content or ""
    answer, _, sources = text.partition("\n\nSources: ")
    assert (
        answer.split() == ["text"] * ANSWER_TOKENS and sources.startswith("[1] ") and ".md, chunk" in sources
    )
    listed = (completion.model_extra or {})["sources"]
    assert [source["number"] for source in listed] == list(range(1, len(listed) + 1))
    assert completion.choices[0].finish_reason == "stop"

    stream = client.chat.completions.create(model="any", messages=messages, stream=True)  # type: ignore[arg-type]
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream]
    assert len([piece for piece in pieces if piece.strip()]) > 2, "the answer was not streamed"
    assert "".join(pieces) == text

    with pytest.raises(openai.UnprocessableEntityError, match="last user message"):
        client.chat.completions.create(model="any", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live_server}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="any", messages=[{"role": "user", "content": "hi"}]
        )


def test_grounded_service_quotes_the_sentence_that_answers(
    embed_model: LLaRAEmbedding, served_db: Path
) -> None:
    chat = ChatConfig(
        answer="extract",
        retrieval=RetrievalConfig(mode="lexical", top_k=3),
        extract=ExtractConfig(scorer="bm25"),
    )
    app = create_app(embed_model, store=StoreConfig(path=served_db), chat=chat)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        health = client.get("/health").json()
        answered = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Can I deploy to production on a Friday?"}]},
        ).json()
        refused = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Can I bring my dog?"}]}
        ).json()
    assert health["chat"] is True
    text = answered["choices"][0]["message"]["content"]
    assert (
        text.startswith('"There are no deploys on Fridays') and "Sources: [1] deployment_process.md" in text
    )
    assert refused["choices"][0]["message"]["content"].startswith("The documents retrieved do not say.")


def test_cli_chat_answers_through_an_openai_endpoint(
    live_server: str, served_db: Path, tiny_chat_model_dir: Path
) -> None:
    pexpect = pytest.importorskip("pexpect")
    command = ["-m", "llara_rag.cli", "chat", "--db", str(served_db), "--model", str(tiny_chat_model_dir)]
    command += ["--generator", f"openai:{live_server}/v1", "--mode", "lexical"]
    env = {**os.environ, "LLARA_RAG_GENERATOR_API_KEY": KEY}
    child = pexpect.spawn(sys.executable, command, encoding="utf-8", timeout=120, env=env)
    try:
        child.expect_exact("you> ")
        child.sendline("can i deploy on a monday?")
        child.expect_exact("assistant> ")
        child.expect_exact("you> ")
        shown = child.before
        assert shown.split("Sources:")[0].split() == ["text"] * ANSWER_TOKENS, shown
        assert shown.count("Sources: [1] ") == 2, shown  # the server's sources in its answer, then the chat's
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before


def test_an_endpoint_that_does_not_answer_is_named_in_one_line(
    served_db: Path, tiny_chat_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["chat", "--db", str(served_db), "--model", str(tiny_chat_model_dir)]
    assert main([*base, "--generator", "openai:http://127.0.0.1:9/v1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "generator endpoint http://127.0.0.1:9/v1 does not answer" in error and "\n" not in error
    os.environ["OLLAMA_HOST"] = "http://127.0.0.1:9"
    try:
        assert main([*base, "--generator", "ollama:llama3"]) == 2
    finally:
        del os.environ["OLLAMA_HOST"]
    assert "Ollama does not answer at http://127.0.0.1:9" in capsys.readouterr().err
