"""`llara-rag serve`: the HTTP API (schemas, limits, auth, batching), OpenAI clients, and the page in Chromium."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from llama_index.core.llms import MockLLM

from llara_rag.cli import main
from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.errors import InvalidInputError
from llara_rag.indexing.store import StoreConfig
from llara_rag.serving import ServiceConfig, create_app

SAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "sample_docs"
CHROMIUM = Path("/usr/bin/chromium")
ANSWER_TOKENS = 6
KEY = "s3cret-key-0123456789"
LOCAL = "http://127.0.0.1"
"""Clients call the service by a loopback name: without a key it answers no other Host."""


def _app(
    embed_model: LLaRAEmbedding, db: Path | None = None, chat: bool = True, **settings: object
) -> FastAPI:
    store = StoreConfig(path=db) if db is not None else None
    llm = MockLLM(max_tokens=ANSWER_TOKENS) if chat and db is not None else None
    return create_app(embed_model, ServiceConfig(**settings), store=store, llm=llm)


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=LOCAL)


@pytest.fixture(scope="module")
def client(embed_model: LLaRAEmbedding, served_db: Path) -> Iterator[TestClient]:
    with _client(_app(embed_model, served_db)) as test_client:
        yield test_client


def _vectors(body: dict) -> np.ndarray:
    assert [item["index"] for item in body["data"]] == list(range(len(body["data"])))
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float32)


def test_embeddings_are_the_encoders_on_either_side(client: TestClient, embed_model: LLaRAEmbedding) -> None:
    texts = ["how does the index store a chunk?", "the wing lift and air pressure"]
    passages = client.post("/v1/embeddings", json={"input": texts, "model": "anything"})
    queries = client.post("/v1/embeddings", json={"input": texts, "input_type": "query"})
    one = client.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "base64"})
    assert passages.status_code == queries.status_code == one.status_code == 200
    assert np.allclose(_vectors(passages.json()), embed_model.encoder.encode_passages(texts), atol=1e-6)
    assert np.allclose(_vectors(queries.json()), embed_model.encoder.encode_queries(texts), atol=1e-6)
    assert not np.allclose(_vectors(passages.json()), _vectors(queries.json()))
    packed = np.frombuffer(base64.b64decode(one.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(packed, _vectors(passages.json())[0])
    body = passages.json()
    assert body["object"] == "list" and body["model"] == embed_model.model_name
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"input": []}, 422, "input is empty"),
        ({"input": [1, 2, 3]}, 422, "token ids"),
        ({"input": ["a cat", "  "]}, 422, "input[1] is empty"),
        ({"input": ["a cat"] * 5}, 413, "5 texts in one request, over the service's limit of 4"),
        ({"input": ["cats " * 20]}, 413, "input[0] is 100 characters, over the service's limit of 60"),
        ({"input": "a cat", "dimensions": 7}, 400, "dimensions 7"),
        ({"input": "a cat", "input_type": "question"}, 422, "input_type: must be 'query', 'passage'"),
        ({"text": "a cat"}, 422, "input: Field required"),
    ],
)
def test_bad_embedding_requests_are_refused_naming_the_limit(
    embed_model: LLaRAEmbedding, body: dict, status: int, message: str
) -> None:
    with _client(_app(embed_model, max_texts=4, max_chars=60)) as client:
        response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == status


def test_concurrent_requests_share_encoder_calls(embed_model: LLaRAEmbedding) -> None:
    app = _app(embed_model, batch_wait_ms=300)
    texts = [[f"cats {i} purr", f"dogs bark {i}"] for i in range(8)]

    async def send_all(sides: list[str]) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as http:
            return await asyncio.gather(
                *(
                    http.post("/v1/embeddings", json={"input": pair, "input_type": side})
                    for pair, side in zip(texts, sides)
                )
            )

    responses = asyncio.run(send_all(["passage"] * 8))
    assert app.state.batcher.calls == 1  # 8 requests, one encoder call
    for pair, response in zip(texts, responses):
        assert np.allclose(_vectors(response.json()), embed_model.encoder.encode_passages(pair), atol=1e-6)
    app = _app(embed_model, batch_wait_ms=300)  # a fresh batcher: its first window is the whole 300 ms
    responses = asyncio.run(send_all(["passage", "query"] * 4))
    assert app.state.batcher.calls == 2  # one call per side
    for pair, response in zip(texts[1::2], responses[1::2]):
        assert np.allclose(_vectors(response.json()), embed_model.encoder.encode_queries(pair), atol=1e-6)


def test_an_int8_encoder_is_compiled_before_serving(
    embed_model: LLaRAEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8 compiles at its first batches, of one text and of several: the service pays it at start-up."""
    encoder = embed_model.encoder
    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(type(encoder), "precision", property(lambda self: "int8"))
    monkeypatch.setattr(encoder, "encode", lambda texts, side, **_: calls.append((len(texts), side)))
    create_app(embed_model)
    assert calls == [(1, "query"), (2, "passage")]


def test_an_api_key_guards_the_api_but_not_health(embed_model: LLaRAEmbedding) -> None:
    with _client(_app(embed_model, api_key=KEY)) as client:
        body = {"input": "a cat"}
        missing = client.post("/v1/embeddings", json=body)
        wrong = client.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer nope"})
        right = client.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {KEY}"})
        health = client.get("/health").json()
    assert missing.status_code == wrong.status_code == 401
    assert "Authorization: Bearer KEY" in missing.json()["error"]["message"]
    assert right.status_code == 200
    assert health["auth"] is True and health["collection"] is None and health["chat"] is False


def test_listening_beyond_loopback_needs_a_key() -> None:
    with pytest.raises(InvalidInputError, match="--api-key"):
        ServiceConfig(host="0.0.0.0")
    assert ServiceConfig(host="0.0.0.0", api_key=KEY).host == "0.0.0.0"
    assert ServiceConfig(host="::1").api_key is None


def test_serve_command_refuses_before_loading_a_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--embeddings-only"]) == 2
    assert "--api-key" in capsys.readouterr().err
    assert main(["serve", "--db", str(tmp_path / "missing")]) == 2
    assert "No database folder" in capsys.readouterr().err


def test_health_names_the_model_and_the_collection(client: TestClient, embed_model: LLaRAEmbedding) -> None:
    health = client.get("/health").json()
    assert health["fingerprint"] == embed_model.fingerprint
    assert health["collection"] == "llara" and health["chunks"] > 0 and health["chat"] is True
    assert client.get("/v1/models").json()["data"][0]["id"] == embed_model.model_name


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_search_answers_in_each_mode(client: TestClient, mode: str) -> None:
    response = client.post(
        "/v1/search", json={"query": "how fast is a page acknowledged?", "k": 3, "mode": mode}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == mode and 0 < len(body["results"]) <= 3
    first = body["results"][0]
    assert first["file_name"].endswith(".md") and first["text"]
    assert set(first["found_by"]) <= {"dense", "lexical"} and first["found_by"]
    if mode != "hybrid":
        assert list(first["found_by"]) == [mode]
    misspelt = client.post(
        "/v1/search", json={"query": "how fast is a page acknowlegded?", "k": 3, "mode": mode}
    ).json()
    assert misspelt["searched"] == body["searched"] == "how fast is a page acknowledged?"
    assert misspelt["results"] == body["results"]


def test_search_filters_and_refusals(client: TestClient, embed_model: LLaRAEmbedding) -> None:
    only = {"query": "policy", "k": 10, "where": {"file_name": "travel_policy.md"}}
    results = client.post("/v1/search", json=only).json()["results"]
    assert results and {hit["file_name"] for hit in results} == {"travel_policy.md"}
    bad_mode = client.post("/v1/search", json={"query": "policy", "mode": "fuzzy"})
    assert bad_mode.status_code == 422 and "mode: must be 'lexical', 'dense' or 'hybrid'" in bad_mode.text
    assert client.post("/v1/search", json={"query": ""}).status_code == 422
    with _client(_app(embed_model)) as embeddings_only:
        refused = embeddings_only.post("/v1/search", json={"query": "policy"})
        no_chat = embeddings_only.post("/v1/chat", json={"message": "hi"})
    assert refused.status_code == 503 and "--embeddings-only" in refused.json()["error"]["message"]
    assert no_chat.status_code == 503


def test_search_sees_an_index_run_made_while_serving(
    tmp_path: Path, served_db: Path, tiny_chat_model_dir: Path, embed_model: LLaRAEmbedding
) -> None:
    db, docs = tmp_path / "db", tmp_path / "docs"
    shutil.copytree(served_db, db)
    shutil.copytree(SAMPLE_DOCS, docs)
    with _client(_app(embed_model, db, chat=False)) as client:
        question = {"query": "rust python systems programming language", "k": 1, "mode": "lexical"}
        before = client.post("/v1/search", json=question).json()["results"]
        (docs / "languages.md").write_text("Rust and Python are systems programming language choices.\n")
        assert main(["index", str(docs), "--db", str(db), "--model", str(tiny_chat_model_dir)]) == 0
        after = client.post("/v1/search", json=question).json()["results"]
    assert [hit["file_name"] for hit in before] != ["languages.md"]
    assert [hit["file_name"] for hit in after] == ["languages.md"]


def _events(response: httpx.Response) -> list[tuple[str, dict]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_chat_streams_sources_then_tokens_and_keeps_the_conversation(client: TestClient) -> None:
    first = client.post("/v1/chat", json={"message": "how fast is a page acknowledged?"})
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/event-stream")
    events = _events(first)
    names = [name for name, _ in events]
    assert names == ["session", "sources"] + ["token"] * (len(names) - 3) + ["done"]
    assert (
        "".join(data["text"] for name, data in events if name == "token").split() == ["text"] * ANSWER_TOKENS
    )
    sources = events[1][1]["sources"]
    assert [source["number"] for source in sources] == list(range(1, len(sources) + 1))
    assert all(source["file_name"].endswith(".md") and source["text"] for source in sources)
    session = events[0][1]["session_id"]
    again = _events(client.post("/v1/chat", json={"message": "and at night?", "session_id": session}))
    assert again[0][1]["session_id"] == session
    fresh = _events(client.post("/v1/chat", json={"message": "hello?", "session_id": "forgotten"}))
    assert fresh[0][1]["session_id"] not in (session, "forgotten")
    assert client.post("/v1/chat", json={"message": ""}).status_code == 422


@pytest.fixture
def live_server(embed_model: LLaRAEmbedding, served_db: Path) -> Iterator[str]:
    """The service on a free loopback port, in a thread, as uvicorn serves it."""
    import uvicorn

    app = _app(embed_model, served_db, api_key=KEY)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        threading.Event().wait(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_openai_client_embeds_through_the_service(live_server: str, embed_model: LLaRAEmbedding) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key=KEY, max_retries=0)
    texts = ["how does the index store a chunk?", "cats purr when happy"]
    passages = client.embeddings.create(model="llara", input=texts)  # the client asks for base64
    floats = client.embeddings.create(model="llara", input=texts, encoding_format="float")
    queries = client.embeddings.create(model="llara", input=texts, extra_body={"input_type": "query"})
    expected = embed_model.encoder.encode_passages(texts)
    assert np.allclose([item.embedding for item in passages.data], expected, atol=1e-6)
    assert np.allclose([item.embedding for item in floats.data], expected, atol=1e-6)
    assert np.allclose(
        [item.embedding for item in queries.data], embed_model.encoder.encode_queries(texts), atol=1e-6
    )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live_server}/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="llara", input="x"
        )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_chat_page_in_headless_chromium(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        page = browser.new_page()
        page.goto(live_server)
        expect(page.locator("#info")).to_contain_text("llara (")
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")
        page.fill("#question", "how fast is a page acknowledged?")
        page.click("#send")
        expect(page.locator(".answer").first).to_have_text(" ".join(["text"] * ANSWER_TOKENS), timeout=30_000)
        source = page.locator(".sources button").first
        expect(source).to_contain_text(".md")
        source.click()
        expect(page.locator("#chunk-title")).to_have_text(source.inner_text())
        assert len(page.locator("#chunk").inner_text()) > 20
        page.screenshot(path=tmp_path / "page.png")
        assert (tmp_path / "page.png").stat().st_size > 10_000
        page.click("#reset")
        expect(page.locator(".turn")).to_have_count(0)
        page.fill("#key", "wrong")
        page.dispatch_event("#key", "change")
        page.fill("#question", "anyone there?")
        page.click("#send")
        expect(page.locator(".answer.error")).to_contain_text("API key")
        browser.close()


def test_schemathesis_finds_no_server_error_nor_an_answer_off_the_schema(
    live_server: str, tmp_path: Path
) -> None:
    """Schemathesis generates requests from the service's OpenAPI document (valid and invalid bodies,
    odd strings, boundary numbers) and checks every answer: never a 5xx, always as the document says."""
    st = Path(sys.executable).with_name("st")
    report = tmp_path / "schemathesis.xml"
    run = [
        str(st), "run", f"{live_server}/openapi.json",
        "--header", f"Authorization: Bearer {KEY}",
        "--checks", "not_a_server_error,response_schema_conformance",
        "--max-examples", "10", "--max-time", "20", "--seed", "0", "--workers", "1",
        "--report", "junit", "--report-junit-path", str(report),
    ]  # fmt: skip
    finished = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert finished.returncode == 0, finished.stdout[-4000:]
    assert "testcase" in report.read_text(encoding="utf-8")
