"""What the service checks of a request before any route reads its body: the ``Host``, the API key and
the body's size.

FastAPI runs a route's dependencies only once the body is read and parsed, so a key checked there lets
anyone make the service read (and hold) whatever they send. :class:`RequestGate` is ASGI middleware
that answers from the headers alone: a request without the key, or declaring a body over the limit, is
refused before a byte of its body is read, and a body that grows past the limit while it is read is
refused there (413). FastAPI's own limiter (``max_body_size``) would do the counting, but it answers in
plain text, over any other answer, where this service answers every error in OpenAI's shape.

Without a key the service listens on the loopback only; a web page the user visits can still reach it
there through DNS rebinding (a name of the page's site made to resolve to 127.0.0.1), so the ``Host``
must then be a loopback name: such a page's requests carry its own host name and are refused.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llara_rag.serving.refusals import error_response

API_KEY_ENV = "LLARA_RAG_API_KEY"
BODY_LIMIT_FLAG = "--max-body-mb"
OPEN_PATHS = frozenset({"/", "/health"})
"""Answered without the key: the page (which asks for it) and the health check. Everything else, the
API documentation (/docs, /redoc, /openapi.json) included, needs it."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """``127.0.0.1`` of ``127.0.0.1:8000``, ``::1`` of ``[::1]:8000``, lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class RequestGate:
    """Refuses, from the headers alone, a request for another ``Host`` than ``hosts`` (when given), one
    without ``key`` (when set) on any path but :data:`OPEN_PATHS`, and one declaring a body over
    ``max_body`` bytes; counts the bytes of the others' bodies as they are read."""

    def __init__(self, app: ASGIApp, *, key: str | None, hosts: frozenset[str] | None, max_body: int) -> None:
        self.app = app
        self.key = key.encode() if key is not None else None
        self.hosts = hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = host_name(headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            refusal = error_response(
                400,
                f"Host {host!r} is not this service's: without an API key it answers only requests to "
                f"{', '.join(sorted(self.hosts))} (a web page must not reach it through its own name). "
                f"Call it as http://127.0.0.1:PORT, or start it with --api-key.",
            )
        elif self.key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            refusal = error_response(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer KEY' with the key "
                f"the service was started with (--api-key or ${API_KEY_ENV}).",
                {"WWW-Authenticate": "Bearer"},
            )
        elif _declared_length(headers) > self.max_body:
            refusal = error_response(413, self.too_large(), {"Connection": "close"})
        else:
            await self.app(scope, self._counted(receive), send)
            return
        await refusal(scope, receive, send)

    def too_large(self) -> str:
        return (
            f"the request body is over the service's limit of {self.max_body / 1e6:g} MB "
            f"(llara-rag serve {BODY_LIMIT_FLAG}); send fewer or shorter texts per request."
        )

    def _counted(self, receive: Receive) -> Receive:
        """``receive`` that stops a body at ``max_body`` bytes: the route reading it answers 413."""
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_body:
                    raise HTTPException(413, self.too_large(), {"Connection": "close"})
            return message

        return counted

    def _authorized(self, headers: Headers) -> bool:
        assert self.key is not None
        scheme, _, key = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(key.strip().encode(), self.key)


def _declared_length(headers: Headers) -> int:
    """The body's Content-Length, 0 when absent or not a number (the body is then counted as read)."""
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0
