"""``POST /v1/chat/completions``: OpenAI's chat API answered from the collection, so any OpenAI chat client
or UI (and ``llara-rag chat --generator openai:URL``) can talk to the user's documents.

The last user message is the question; the messages before it are the conversation (a request carries
its whole history, as OpenAI's API does, so nothing is remembered between requests). The answer comes
from the same chat engine as ``/v1/chat`` and ends with its sources (``Sources: [1] file, chunk 2; ...``)
so a client that shows only the text still shows where it came from; the non-streamed body also lists
them as ``sources``. Streaming follows OpenAI's server-sent events, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from llara_rag.chat.engine import Citation, cite
from llara_rag.errors import LLaRAError
from llara_rag.serving.schemas import ChatCompletion, ChatCompletionChoice, ChatCompletionRequest

if TYPE_CHECKING:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.chat_engine.types import BaseChatEngine


def sources_line(citations: list[Citation]) -> str:
    if not citations:
        return "\n\nSources: none (the index returned no chunks)"
    return "\n\nSources: " + "; ".join(citation.label for citation in citations)


def _conversation(request: ChatCompletionRequest) -> tuple[str, list[ChatMessage]]:
    from llama_index.core.base.llms.types import ChatMessage

    try:
        turns = [(message.role, message.text()) for message in request.messages]
    except ValueError as error:
        raise HTTPException(422, f"messages: {error}") from None
    last = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last is None or not turns[last][1].strip():
        raise HTTPException(422, "messages: the last user message is the question; send one with text.")
    history = [
        ChatMessage(role=role, content=text) for role, text in turns[:last] if role in ("user", "assistant")
    ]
    return turns[last][1], history


def add_chat_completions(
    api: APIRouter,
    new_engine: Callable[[], BaseChatEngine] | None,
    model: str,
    lock: asyncio.Lock,
    cancel: Callable[[], None] | None,
    limit_chars: Callable[[str, str], None],
) -> None:
    """Adds the route to ``api``; ``new_engine`` is None when the service answers no chat."""

    @api.post("/chat/completions", response_model=None)
    async def chat_completions(request: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
        if new_engine is None:
            raise HTTPException(
                503,
                "this service answers no chat: it was started with --no-chat or --embeddings-only; "
                "restart `llara-rag serve` without them.",
            )
        question, history = _conversation(request)
        limit_chars(question, "the last user message")
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        pieces = _pieces(new_engine(), question, history, lock, cancel)
        if request.stream:
            return StreamingResponse(
                _chunks(pieces, completion_id, created, model),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        text, citations = "", []
        async for piece in pieces:
            if isinstance(piece, list):
                citations = piece
            else:
                text += piece
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=model,
            choices=[ChatCompletionChoice(message={"role": "assistant", "content": text})],
            sources=[asdict(citation) for citation in citations],
        )


async def _pieces(
    engine: BaseChatEngine,
    question: str,
    history: list[ChatMessage],
    lock: asyncio.Lock,
    cancel: Callable[[], None] | None,
) -> AsyncIterator[str | list[Citation]]:
    """The citations first, then the answer's text pieces, then the sources line; one answer at a time."""
    async with lock:
        pieces = None
        try:
            response = await asyncio.to_thread(engine.stream_chat, question, history)
            citations = cite(response.source_nodes)
            yield citations
            pieces = iter(response.response_gen)
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                yield piece
            yield sources_line(citations)
        except LLaRAError as error:
            raise HTTPException(422, str(error)) from None
        finally:
            if cancel is not None and pieces is not None:
                cancel()


async def _chunks(
    pieces: AsyncIterator[str | list[Citation]], completion_id: str, created: int, model: str
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for piece in pieces:
        if isinstance(piece, str) and piece:
            yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"
