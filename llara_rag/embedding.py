"""LLaRAEmbedding: the LlamaIndex face of the encoder.

Every setting that changes the vectors is a pydantic field, so the embedding serialises and
LlamaIndex's ingestion cache is keyed on it; the weights themselves are shared per process through
``get_encoder``, so two embeddings with one configuration load the model once.
"""

from __future__ import annotations

import asyncio

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import Field, PrivateAttr

from llara_rag.backbone import DEFAULT_MODEL
from llara_rag.encoder import EncoderConfig, EncoderSettings, LLaRAEncoder, get_encoder


class LLaRAEmbedding(EncoderSettings, BaseEmbedding):
    """LLaRA embeddings for LlamaIndex: queries take the EBAR prompt, documents the EBAE prompt.

    Empty or whitespace-only texts raise ``InvalidInputError``: a vector for nothing would only add
    noise to an index (llara-rag's ingestion drops such chunks before they get here).
    """

    embed_batch_size: int = Field(default=64, gt=0, description="Texts handed to the encoder at once.")
    encoder_batch_size: int = Field(default=16, gt=0, description="Texts per forward pass.")

    _encoder: LLaRAEncoder = PrivateAttr()

    def __init__(self, model_name: str = DEFAULT_MODEL, **kwargs: object) -> None:
        super().__init__(model_name=model_name, **kwargs)
        self._encoder = get_encoder(self.encoder_config)

    @classmethod
    def class_name(cls) -> str:
        return "LLaRAEmbedding"

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.to_encoder_config(self.encoder_batch_size)

    @property
    def encoder(self) -> LLaRAEncoder:
        return self._encoder

    @property
    def fingerprint(self) -> str:
        return self._encoder.fingerprint

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
