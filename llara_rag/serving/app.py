"""The HTTP service: OpenAI-compatible embeddings, search and streamed chat over one collection, and a page.

Routes (all but ``/`` and ``/health`` need ``Authorization: Bearer KEY`` when an API key is set; the
key and the ``Host`` are checked before a body is read, :mod:`llara_rag.serving.gate`):

- ``POST /v1/embeddings``: OpenAI's embeddings API; ``input_type: "query"`` selects LLaRA's query side;
- ``POST /v1/search``: chunks for a question, in the mode ``llara-rag query`` uses (dense, lexical, hybrid);
- ``POST /v1/chat``: an answer from the chat engine of ``llara-rag chat``, as server-sent events;
- ``POST /v1/chat/completions``: OpenAI's chat API over the same engine (:mod:`.completions`);
- ``GET /v1/models``, ``GET /health`` (model, fingerprint, collection) and ``GET /``, the chat page.

Errors are OpenAI's shape, ``{"error": {"message", "type", "code"}}``, with a message naming the fix
(:mod:`llara_rag.serving.refusals`). Each text is checked before it joins an encoder batch, so a bad one
fails its own request alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import asdict
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from llara_rag.chat.engine import ChatConfig, build_chat_engine, cite
from llara_rag.encoding.prompts import Side
from llara_rag.errors import LLaRAError
from llara_rag.retrieval.retriever import Hit, LLaRAHybridRetriever, RetrievalConfig
from llara_rag.serving.batching import EmbeddingBatcher
from llara_rag.serving.completions import add_chat_completions
from llara_rag.serving.gate import API_KEY_ENV, BODY_LIMIT_FLAG, LOOPBACK_HOSTS, RequestGate
from llara_rag.serving.refusals import DOCUMENTED, add_error_handlers
from llara_rag.serving.schemas import (
    ChatRequest,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    Health,
    ModelInfo,
    SearchRequest,
    SearchResponse,
    Usage,
)
from llara_rag.settings import UserSettings, not_unicode

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from llama_index.core.chat_engine.types import BaseChatEngine
    from llama_index.core.llms import LLM
    from llama_index.core.schema import NodeWithScore, QueryBundle

    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.encoding.encoder import LLaRAEncoder
    from llara_rag.indexing.lexical import LexicalIndex
    from llara_rag.indexing.store import StoreConfig

logger = logging.getLogger(__name__)

PAGE = files("llara_rag.serving") / "page.html"
MIN_KEY_LENGTH = 16
JSON_BYTES_PER_CHAR = 6
"""The most one character of a text takes in a JSON body: a ``\\uXXXX`` escape, as ``json.dumps`` writes
any non-ASCII character by default."""


class ServiceConfig(UserSettings):
    """Where the service listens, who may call it, and how much one request may ask."""

    model_config = ConfigDict(frozen=True)

    host: str = Field(default="127.0.0.1", json_schema_extra={"flag": "--host"})
    port: int = Field(default=8000, ge=0, le=65535, json_schema_extra={"flag": "--port"})
    api_key: SecretStr | None = Field(
        default=None,
        description="Required as 'Authorization: Bearer KEY' on every route but / and /health when set "
        f"(--api-key, ${API_KEY_ENV}); at least {MIN_KEY_LENGTH} characters.",
    )
    max_texts: int = Field(
        default=256,
        gt=0,
        description="Texts in one embeddings request.",
        json_schema_extra={"flag": "--max-texts"},
    )
    max_chars: int = Field(
        default=32_000,
        gt=0,
        description="Characters in one text, question or message.",
        json_schema_extra={"flag": "--max-chars"},
    )
    max_batch: int = Field(default=64, gt=0, description="Texts grouped into one encoder call.")
    batch_wait_ms: float = Field(
        default=50.0,
        ge=0,
        description="Longest wait of a request for others to share its encoder call (a tenth of the last call "
        "when that is shorter).",
        json_schema_extra={"flag": "--batch-wait-ms"},
    )
    max_sessions: int = Field(
        default=64, gt=0, description="Conversations remembered; the oldest is dropped."
    )
    max_body_mb: float | None = Field(
        default=None,
        gt=0,
        description="Megabytes of one request body, refused while it is read (default: what --max-texts "
        "texts of --max-chars characters take as JSON, plus 1 MB).",
        json_schema_extra={"flag": BODY_LIMIT_FLAG},
    )

    @field_validator("api_key")
    @classmethod
    def _key_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(
                f"--api-key is {len(key.get_secret_value())} characters; a key needs at least "
                f"{MIN_KEY_LENGTH} to resist guessing. Make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe())'`."
            )
        return key

    @model_validator(mode="after")
    def _key_beyond_loopback(self) -> ServiceConfig:
        if self.api_key is None and not is_loopback(self.host):
            raise ValueError(
                f"--host {self.host} lets other machines call the service: set an API key with --api-key or "
                f"${API_KEY_ENV} (clients then send 'Authorization: Bearer KEY'), or serve on 127.0.0.1."
            )
        return self

    @property
    def body_limit(self) -> int:
        """Bytes of one request body: ``max_body_mb``, else room for the largest embeddings request."""
        if self.max_body_mb is not None:
            return round(self.max_body_mb * 1_000_000)
        return self.max_texts * self.max_chars * JSON_BYTES_PER_CHAR + 1_000_000

    @property
    def allowed_hosts(self) -> frozenset[str] | None:
        """The ``Host`` names answered: loopback names when no key guards the service; any with a key."""
        return None if self.api_key is not None else LOOPBACK_HOSTS | {self.host.lower()}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class ServedCollection:
    """The collection searched, and its lexical index, reloaded when an ``index`` run has changed it."""

    def __init__(self, store: StoreConfig, collection: Collection) -> None:
        self.store = store
        self.collection = collection
        self._lexical: LexicalIndex | None = None

    def spelling_source(self) -> LexicalIndex | None:
        """The lexical index a dense search corrects spelling against, or None where there is none."""
        from llara_rag.errors import LexicalIndexError

        try:
            return self.lexical()
        except LexicalIndexError:
            return None

    def lexical(self) -> LexicalIndex:
        """The lexical index of the collection as it is now (Chroma's metadata is read again each time)."""
        from llara_rag.indexing.lexical import is_current, open_lexical_index
        from llara_rag.indexing.store import existing_collection

        if self._lexical is not None:
            self.collection = existing_collection(self.store)
        if self._lexical is None or not is_current(self._lexical.stamp, self.collection):
            self._lexical = open_lexical_index(self.store, self.collection)
        return self._lexical


class Conversations:
    """Chat engines by session id, the least recently used dropped beyond ``limit``."""

    def __init__(
        self,
        retriever: LLaRAHybridRetriever,
        llm: LLM | None,
        config: ChatConfig,
        limit: int,
        encoder: LLaRAEncoder | None = None,
    ) -> None:
        self.retriever, self.llm, self.config, self.limit = retriever, llm, config, limit
        self.encoder = encoder
        self._engines: OrderedDict[str, BaseChatEngine] = OrderedDict()

    def fresh(self) -> BaseChatEngine:
        """An engine remembered nowhere, for a request that carries its own history."""
        return build_chat_engine(self.retriever, self.llm, self.config, self.encoder)

    def get(self, session_id: str | None) -> tuple[str, BaseChatEngine]:
        if session_id in self._engines:
            self._engines.move_to_end(session_id)
            return session_id, self._engines[session_id]
        session_id = uuid.uuid4().hex
        self._engines[session_id] = self.fresh()
        while len(self._engines) > self.limit:
            self._engines.popitem(last=False)
        return session_id, self._engines[session_id]


def create_app(
    embed_model: LLaRAEmbedding,
    config: ServiceConfig | None = None,
    *,
    store: StoreConfig | None = None,
    llm: LLM | None = None,
    chat: ChatConfig | None = None,
) -> FastAPI:
    """The service for ``embed_model``: embeddings always; search over ``store``'s collection when given
    (opened now, so an index built with another model is refused before serving); chat when ``llm`` is too,
    or when ``chat.answer`` is ``extract`` (quotes, no generator).
    """
    config = config or ServiceConfig()
    chat = chat or ChatConfig()
    encoder = embed_model.encoder
    if encoder.precision == "int8":  # compiled at its first batches: before serving, not in a request
        logger.info("Compiling the int8 model before serving (once a process)")
        encoder.encode(["a query"], "query")
        encoder.encode(["a passage", "and another one"], "passage")
    served = None
    if store is not None:
        from llara_rag.indexing.store import open_store

        served = ServedCollection(store, open_store(store, embed_model, create=False).collection)
    batcher = EmbeddingBatcher(
        encoder.encode, max_batch=config.max_batch, max_wait=config.batch_wait_ms / 1000
    )
    chat_lock = asyncio.Lock()  # one generator answers one question at a time
    conversations = None
    if llm is not None or chat.answer == "extract":
        if served is None:
            raise ValueError("chat needs a collection to retrieve from: pass store as well as llm")
        chat_retriever = _retriever(served, embed_model, chat.retrieval)
        conversations = Conversations(chat_retriever, llm, chat, config.max_sessions, encoder)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.close()

    app = FastAPI(
        title="llara-rag",
        summary="LLaRA embeddings, search and chat",
        lifespan=lifespan,
        responses=DOCUMENTED,
    )
    app.state.batcher = batcher
    add_error_handlers(app)
    key = config.api_key.get_secret_value() if config.api_key else None
    app.add_middleware(RequestGate, key=key, hosts=config.allowed_hosts, max_body=config.body_limit)
    api = APIRouter(prefix="/v1")

    def limit_chars(text: str, what: str) -> None:
        """Refuses a text over ``--max-chars``, or one that is no Unicode text (before any batch)."""
        if len(text) > config.max_chars:
            raise HTTPException(
                413,
                f"{what} is {len(text):,} characters, over the service's limit of {config.max_chars:,} "
                "(llara-rag serve --max-chars); split it.",
            )
        if problem := not_unicode(text):
            raise HTTPException(400, f"{what} {problem}; send it as UTF-8 text.")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> Health:
        return Health(
            model=embed_model.model_name,
            fingerprint=embed_model.fingerprint,
            dimension=encoder.dimension,
            collection=served.collection.name if served else None,
            chunks=await asyncio.to_thread(served.collection.count) if served else None,
            chat=conversations is not None,
            auth=config.api_key is not None,
        )

    @api.get("/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [ModelInfo(id=embed_model.model_name)]}

    @api.post("/embeddings")
    async def embeddings(request: EmbeddingRequest) -> EmbeddingResponse:
        texts = _texts(request.input)
        if len(texts) > config.max_texts:
            raise HTTPException(
                413,
                f"{len(texts)} texts in one request, over the service's limit of {config.max_texts} "
                "(llara-rag serve --max-texts); send them in several requests.",
            )
        for index, text in enumerate(texts):
            limit_chars(text, f"input[{index}]")
        if request.dimensions not in (None, encoder.dimension):
            raise HTTPException(
                400,
                f"dimensions {request.dimensions}: this model's vectors have {encoder.dimension}; "
                "leave dimensions out.",
            )
        side: Side = "query" if request.input_type == "query" else "passage"
        vectors = await batcher.embed(texts, side)
        tokens = sum(map(len, await asyncio.to_thread(encoder.build_inputs, texts, side)))
        return EmbeddingResponse(
            data=[
                EmbeddingData(index=index, embedding=_encoded(vector, request.encoding_format))
                for index, vector in enumerate(vectors)
            ],
            model=embed_model.model_name,
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    @api.post("/search")
    async def search(request: SearchRequest) -> SearchResponse:
        collection = _required(served, "search")
        limit_chars(request.query, "query")
        retrieval = RetrievalConfig(
            mode=request.mode or chat.retrieval.mode,
            alpha=chat.retrieval.alpha if request.alpha is None else request.alpha,
            fusion=request.fusion or chat.retrieval.fusion,
            top_k=request.k,
            where=request.where,
            spelling=chat.retrieval.spelling,
        )
        retriever = await asyncio.to_thread(_retriever, collection, embed_model, retrieval)
        question = retriever.corrected(request.query)
        vector = None
        if retrieval.mode != "lexical":
            vector = (await batcher.embed([question], "query"))[0].tolist()

        def retrieve() -> list[Hit]:
            from llama_index.core.schema import QueryBundle

            return [Hit.of(hit) for hit in retriever.retrieve(QueryBundle(question, embedding=vector))]

        return SearchResponse(
            mode=retrieval.mode, searched=question, results=await asyncio.to_thread(retrieve)
        )

    @api.post("/chat")
    async def chat_route(request: ChatRequest) -> StreamingResponse:
        if conversations is None:
            raise HTTPException(
                503,
                "this service answers no chat: it was started with --no-chat or --embeddings-only; "
                "restart `llara-rag serve` without them.",
            )
        limit_chars(request.message, "message")
        session_id, engine = conversations.get(request.session_id)
        cancel = getattr(llm, "cancel", None)
        return StreamingResponse(
            _answer(engine, request.message, session_id, chat_lock, cancel),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    add_chat_completions(
        api,
        conversations.fresh if conversations else None,
        embed_model.model_name,
        chat_lock,
        getattr(llm, "cancel", None),
        limit_chars,
    )
    app.include_router(api)
    return app


def _retriever(
    served: ServedCollection, embed_model: LLaRAEmbedding, retrieval: RetrievalConfig
) -> LLaRAHybridRetriever:
    """A retriever over the served collection; a lexical index out of step is reloaded (raises when missing,
    except in dense mode, which only corrects spelling with it)."""
    if retrieval.mode != "dense":
        return _ReloadingRetriever(served, embed_model, retrieval)
    lexical = served.spelling_source() if retrieval.spelling else None
    return LLaRAHybridRetriever(served.collection, embed_model, lexical, retrieval)


class _ReloadingRetriever(LLaRAHybridRetriever):
    """Takes the lexical index current at each retrieval, so an ``index`` run while serving is seen."""

    def __init__(
        self, served: ServedCollection, embed_model: LLaRAEmbedding, retrieval: RetrievalConfig
    ) -> None:
        super().__init__(served.collection, embed_model, served.lexical(), retrieval)
        self.served = served

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        self.lexical = self.served.lexical()
        self.collection = self.served.collection
        return super()._retrieve(query_bundle)


def _required(served: ServedCollection | None, route: str) -> ServedCollection:
    if served is None:
        raise HTTPException(
            503,
            f"this service has no collection to {route}: it was started with --embeddings-only; "
            "restart `llara-rag serve` with --db or --server.",
        )
    return served


def _texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise HTTPException(422, "input is empty: send a text or a list of texts.")
    if not all(isinstance(text, str) for text in texts):
        raise HTTPException(
            422, "input holds token ids: send text, which LLaRA wraps in its own prompts before tokenizing."
        )
    for index, text in enumerate(texts):
        if not text.strip():  # type: ignore[union-attr]
            raise HTTPException(422, f"input[{index}] is empty or whitespace only; drop it.")
    return texts  # type: ignore[return-value]


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _answer(
    engine: BaseChatEngine, message: str, session_id: str, lock: asyncio.Lock, cancel: Any
) -> AsyncIterator[str]:
    """The answer as events: ``session``, ``sources``, one ``token`` per piece, then ``done`` (or ``error``).

    A client that goes away mid-answer cancels this generator, which stops the generation.
    """
    async with lock:
        yield _event("session", {"session_id": session_id})
        pieces = None
        try:
            response = await asyncio.to_thread(engine.stream_chat, message)
            yield _event(
                "sources", {"sources": [asdict(citation) for citation in cite(response.source_nodes)]}
            )
            pieces = iter(response.response_gen)
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                yield _event("token", {"text": piece})
        except LLaRAError as error:
            yield _event("error", {"message": str(error)})
        finally:
            if cancel is not None and pieces is not None:
                cancel()
        yield _event("done", {})
