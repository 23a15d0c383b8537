"""LLaRAEmbeddingFunction: the plain-Chroma face of the encoder.

Chroma embeds ``add(documents=...)`` through ``__call__`` and ``query(query_texts=...)`` through
``embed_query``, so documents take the EBAE prompt and queries the EBAR prompt. The class is registered
with Chroma under the name ``llara`` and its settings are persisted in the collection's configuration, so
a collection reopened later (after ``import llara_rag.chroma_embedding``) embeds with the same encoder.
The weights are fetched from ``get_encoder`` on each call — a dictionary look-up after the first — so
Chroma can rebuild the function from its configuration (it does on every ``get_collection``) without
loading a model, and every adapter in the process shares one loaded model.
"""

from __future__ import annotations

from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from llara_rag.adapter import DEFAULT
from llara_rag.backbone import DEFAULT_MODEL
from llara_rag.encoder import EncoderConfig, LLaRAEncoder, get_encoder
from llara_rag.errors import ModelMismatchError
from llara_rag.prompts import DEFAULT_PROMPTS, LLaRAPrompts

VECTOR_SETTINGS = ("model_name", "adapter", "query_max_length", "passage_max_length", "prompts")
"""The settings that change the vectors; a collection's embedding function may not change them."""


@register_embedding_function
class LLaRAEmbeddingFunction(EmbeddingFunction[Documents]):
    """LLaRA embeddings for chromadb: documents take the EBAE prompt, ``query_texts`` the EBAR prompt."""

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        adapter: str | None = DEFAULT,
        query_max_length: int = 128,
        passage_max_length: int = 512,
        prompts: LLaRAPrompts | dict[str, str] = DEFAULT_PROMPTS,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.config = EncoderConfig.model_validate(
            {
                "model": model_name,
                "adapter": adapter,
                "query_max_length": query_max_length,
                "passage_max_length": passage_max_length,
                "prompts": prompts,
                "device": device,
                "dtype": dtype,
                "batch_size": batch_size,
            }
        )

    @property
    def encoder(self) -> LLaRAEncoder:
        return get_encoder(self.config)

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.encoder.encode_passages(input))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.encoder.encode_queries(input))

    @staticmethod
    def name() -> str:
        return "llara"

    def default_space(self) -> Space:
        """The vectors are unit length, so cosine, inner product and L2 rank alike; cosine reads best."""
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        config = self.config
        return {
            "model_name": config.model,
            "adapter": config.adapter,
            "query_max_length": config.query_max_length,
            "passage_max_length": config.passage_max_length,
            "prompts": config.prompts.model_dump(),
            "device": config.device,
            "dtype": config.dtype,
            "batch_size": config.batch_size,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LLaRAEmbeddingFunction:
        return LLaRAEmbeddingFunction(**config)

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """Vectors already in a collection must stay comparable with the ones added after the update."""
        changed = [key for key in VECTOR_SETTINGS if old_config.get(key) != new_config.get(key)]
        if changed:
            raise ModelMismatchError(
                f"The collection's LLaRA embedding function cannot change {', '.join(changed)}: its stored "
                "vectors were made with the old settings. Create a new collection (or re-index) instead."
            )
