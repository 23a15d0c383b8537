"""The gate and the refusals of `llara-rag serve`, on a stand-in encoder: what is refused before a body is
read, how a body is bounded while it is read, which Host names are answered, and that every error,
the framework's and an unforeseen failure's included, is OpenAI's shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.errors import InvalidInputError
from llara_rag.serving import ServiceConfig, create_app
from llara_rag.serving.app import PAGE
from llara_rag.serving.batching import EmbeddingBatcher
from llara_rag.serving.gate import host_name

KEY = "gate-test-key-0123456789"
CHUNK = b"x" * 1000


@pytest.fixture(scope="module")
def embed_model(tiny_backbone_dir: Path) -> LLaRAEmbedding:
    return LLaRAEmbedding(model_name=str(tiny_backbone_dir))


def _send(app: FastAPI, method: str, path: str, **request: object) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.request(method, path, **request)  # type: ignore[arg-type]

    return asyncio.run(send())


class Body:
    """A streamed body (no Content-Length) of ``chunks`` kilobytes that counts how many were read."""

    def __init__(self, chunks: int) -> None:
        self.chunks, self.read = chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield CHUNK


def _assert_openai_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["code"] == status
    assert words in error["message"]


def test_the_key_is_checked_before_a_byte_of_the_body_is_read(embed_model: LLaRAEmbedding) -> None:
    app = create_app(embed_model, ServiceConfig(api_key=KEY))
    body = Body(1000)
    response = _send(app, "POST", "/v1/embeddings", content=body)
    _assert_openai_error(response, 401, "missing or wrong API key")
    assert body.read <= 1  # what the transport takes up front, not the megabyte sent


def test_a_body_is_bounded_while_it_is_read(embed_model: LLaRAEmbedding) -> None:
    app = create_app(embed_model, ServiceConfig(max_body_mb=0.01))
    streamed = Body(1000)
    _assert_openai_error(_send(app, "POST", "/v1/embeddings", content=streamed), 413, "limit of 0.01 MB")
    assert streamed.read <= 12  # stopped just past 10 kB
    declared = _send(app, "POST", "/v1/embeddings", content=b"x" * 20_000)  # Content-Length: 20000
    _assert_openai_error(declared, 413, "--max-body-mb")


def test_the_default_body_limit_holds_the_largest_request_the_limits_allow() -> None:
    config = ServiceConfig(max_texts=2, max_chars=1000)
    assert config.body_limit == 2 * 1000 * 6 + 1_000_000
    assert ServiceConfig(max_body_mb=3).body_limit == 3_000_000


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "::1"), ("LocalHost", "localhost"), ("a.b:1", "a.b")],
)
def test_host_names(header: str, name: str) -> None:
    assert host_name(header) == name


def test_without_a_key_only_loopback_hosts_are_answered(embed_model: LLaRAEmbedding) -> None:
    app = create_app(embed_model, ServiceConfig())
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        assert _send(app, "GET", "/v1/models", headers={"host": host}).status_code == 200
    rebound = _send(app, "GET", "/v1/models", headers={"host": "attacker.example:8000"})
    _assert_openai_error(rebound, 400, "Host 'attacker.example' is not this service's")
    keyed = create_app(embed_model, ServiceConfig(api_key=KEY))
    headers = {"host": "llara.internal", "authorization": f"Bearer {KEY}"}
    assert _send(keyed, "GET", "/v1/models", headers=headers).status_code == 200


def test_the_api_documentation_needs_the_key(embed_model: LLaRAEmbedding) -> None:
    app = create_app(embed_model, ServiceConfig(api_key=KEY))
    for path in ("/docs", "/redoc", "/openapi.json"):
        _assert_openai_error(_send(app, "GET", path), 401, "API key")
    schema = _send(app, "GET", "/openapi.json", headers={"authorization": f"Bearer {KEY}"}).json()
    refusal = schema["paths"]["/v1/embeddings"]["post"]["responses"]["422"]
    assert refusal["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert _send(app, "GET", "/health").status_code == 200


def test_a_short_key_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="--api-key is 5 characters; a key needs at least 16"):
        ServiceConfig(api_key="short")


def test_framework_errors_and_failures_answer_in_openai_shape(embed_model: LLaRAEmbedding) -> None:
    app = create_app(embed_model, ServiceConfig())

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("an unforeseen failure")

    _assert_openai_error(_send(app, "GET", "/v1/nowhere"), 404, "no route /v1/nowhere")
    _assert_openai_error(_send(app, "PUT", "/v1/embeddings"), 405, "use POST")
    json_type = {"content-type": "application/json"}
    not_json = _send(app, "POST", "/v1/embeddings", content=b"{", headers=json_type)
    _assert_openai_error(not_json, 422, "not valid JSON")
    untyped = _send(app, "POST", "/v1/embeddings", content=b"{}")
    _assert_openai_error(untyped, 422, "Content-Type: application/json")
    _assert_openai_error(_send(app, "GET", "/v1/boom"), 500, "RuntimeError")


def test_a_text_that_is_no_unicode_fails_its_own_request(embed_model: LLaRAEmbedding) -> None:
    app = create_app(embed_model, ServiceConfig())
    body = b'{"input": ["cats", "bad \\ud800"]}'
    headers = {"content-type": "application/json"}
    response = _send(app, "POST", "/v1/embeddings", content=body, headers=headers)
    _assert_openai_error(response, 400, "input[1] holds '\\ud800' at position 4")


def test_a_failing_batch_fails_only_the_request_that_cannot_be_encoded() -> None:
    def encode(texts: Sequence[str], side: str) -> np.ndarray:
        if "poison" in texts:
            raise ValueError("cannot encode poison")
        return np.array([[float(len(text))] for text in texts])

    async def send_all() -> list[np.ndarray | BaseException]:
        batcher = EmbeddingBatcher(encode, max_wait=0.2)
        try:
            requests = [batcher.embed(texts, "passage") for texts in (["a"], ["bb", "poison"], ["ccc"])]
            return await asyncio.gather(*requests, return_exceptions=True)
        finally:
            await batcher.close()

    first, poisoned, last = asyncio.run(send_all())
    assert isinstance(poisoned, ValueError)
    assert np.array_equal(first, [[1.0]]) and np.array_equal(last, [[3.0]])


def test_the_page_keeps_the_key_for_its_tab_only() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert "localStorage" not in page and "sessionStorage" in page
