"""LLaRAEmbedding: the LlamaIndex face of the encoder.

Every setting that changes the vectors is a pydantic field, and the encoder's fingerprint (which covers
the adapter's weights, not only its path) is serialised with them, so LlamaIndex's ingestion cache is
keyed on what the vectors are made of; the weights themselves are shared per process through
``get_encoder``, so two embeddings with one configuration load the model once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.storage.kvstore.types import DEFAULT_COLLECTION, BaseKVStore
from pydantic import Field, PrivateAttr, computed_field

from llara_rag.encoding.backbone import DEFAULT_MODEL
from llara_rag.encoding.encoder import EncoderConfig, EncoderSettings, LLaRAEncoder, get_encoder
from llara_rag.encoding.prompts import Side

_SIDE: ContextVar[Side] = ContextVar("llara_side", default="passage")
"""The side being embedded, for ``SidedCache``: LlamaIndex looks the cache up before it says which."""


@contextmanager
def _embedding(side: Side) -> Iterator[None]:
    token = _SIDE.set(side)
    try:
        yield
    finally:
        _SIDE.reset(token)


class SidedCache(BaseKVStore):
    """A user's ``embeddings_cache`` with one collection per encoder fingerprint and side.

    LlamaIndex keys that cache on the text alone, so a query and a passage of one text (different prompts)
    or two adapters would otherwise share a vector.
    """

    def __init__(self, store: BaseKVStore, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint

    def _collection(self, collection: str) -> str:
        return f"{collection}/llara-{self.fingerprint}-{_SIDE.get()}"

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.store.put(key, val, self._collection(collection))

    async def aput(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        await self.store.aput(key, val, self._collection(collection))

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return self.store.get(key, self._collection(collection))

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return await self.store.aget(key, self._collection(collection))

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return self.store.get_all(self._collection(collection))

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return await self.store.aget_all(self._collection(collection))

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return self.store.delete(key, self._collection(collection))

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return await self.store.adelete(key, self._collection(collection))


class LLaRAEmbedding(EncoderSettings, BaseEmbedding):
    """LLaRA embeddings for LlamaIndex: queries take the EBAR prompt, documents the EBAE prompt.

    Empty or whitespace-only texts raise ``InvalidInputError``: a vector for nothing would only add
    noise to an index (llara-rag's ingestion drops such chunks before they get here). An
    ``embeddings_cache`` is wrapped in a ``SidedCache``, so its entries name the encoder and the side.
    """

    embed_batch_size: int = Field(
        default=64, gt=0, le=2048, description="Texts handed to the encoder at once (LlamaIndex's limit)."
    )
    encoder_batch_size: int = Field(default=16, gt=0, description="Texts per forward pass.")

    _encoder: LLaRAEncoder = PrivateAttr()

    def __init__(self, model_name: str = DEFAULT_MODEL, **kwargs: object) -> None:
        super().__init__(model_name=model_name, **kwargs)
        self._encoder = get_encoder(self.encoder_config)
        cache = self.embeddings_cache
        if cache is not None:
            self.embeddings_cache = SidedCache(
                cache.store if isinstance(cache, SidedCache) else cache, self.fingerprint
            )

    @classmethod
    def class_name(cls) -> str:
        return "LLaRAEmbedding"

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.to_encoder_config(self.encoder_batch_size)

    @property
    def encoder(self) -> LLaRAEncoder:
        return self._encoder

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> str:
        """The encoder's identity, adapter weights included: re-training into the same folder changes it."""
        return self._encoder.fingerprint

    def get_query_embedding(self, query: str) -> Embedding:
        with _embedding("query"):
            return super().get_query_embedding(query)

    async def aget_query_embedding(self, query: str) -> Embedding:
        with _embedding("query"):
            return await super().aget_query_embedding(query)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.encode_queries([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encoder.encode_passages([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encoder.encode_passages(texts, show_progress=False).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
