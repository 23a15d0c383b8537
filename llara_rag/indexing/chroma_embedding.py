"""LLaRAEmbeddingFunction: the plain-Chroma face of the encoder.

Chroma embeds ``add(documents=...)`` through ``__call__`` and ``query(query_texts=...)`` through
``embed_query``, so documents take the EBAE prompt and queries the EBAR prompt. The class is registered
with Chroma under the name ``llara`` and what identifies its vectors (settings and encoder fingerprint,
not the device, dtype or precision they were computed with) is persisted in the collection's configuration, so a
collection reopened later, on any machine (after ``import llara_rag.indexing.chroma_embedding``), embeds with the
same encoder, and refuses to embed if that encoder's weights changed since. A collection written by
``llara-rag index`` records its encoder in its metadata instead; ``for_collection`` reads either:

    function = LLaRAEmbeddingFunction.for_collection(client.get_collection("llara"))
    collection = client.get_collection("llara", embedding_function=function)
    collection.query(query_texts=["how do cats show they are happy?"])

The weights are fetched from ``get_encoder`` on each call — a dictionary look-up after the first — so
Chroma can rebuild the function from its configuration (it does on every ``get_collection``) without
loading a model, and every adapter in the process shares one loaded model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llara_rag.encoding.adapter import DEFAULT, adapter_name
from llara_rag.encoding.backbone import DEFAULT_MODEL, Dtype
from llara_rag.encoding.encoder import EncoderConfig, LLaRAEncoder, get_encoder
from llara_rag.encoding.precision import Precision
from llara_rag.encoding.prompts import DEFAULT_PROMPTS, LLaRAPrompts
from llara_rag.errors import ModelMismatchError
from llara_rag.extras import STORE, missing_extra

try:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
    from chromadb.utils.embedding_functions import register_embedding_function
except ModuleNotFoundError as error:
    raise missing_extra("chromadb", STORE) from error

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

VECTOR_SETTINGS = (
    "model_name",
    "adapter",
    "query_max_length",
    "passage_max_length",
    "prompts",
    "fingerprint",
)
"""What identifies the vectors; a collection's embedding function may not change it."""
MACHINE_SETTINGS = ("device", "dtype", "precision", "batch_size", "int8")
"""Where and how fast the vectors are computed: chosen by each machine, never persisted (older stored
configurations hold them, "int8" from when int8 vectors were kept apart; they are ignored on reopening)."""


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
        lowercase: bool | None = None,
        device: str | None = None,
        dtype: Dtype | None = None,
        precision: Precision | None = None,
        batch_size: int = 16,
        fingerprint: str | None = None,
    ) -> None:
        """``fingerprint``: the encoder a collection's vectors were made with (from its stored configuration
        or pin); the function refuses to embed with an encoder that makes other vectors."""
        self.pinned = fingerprint
        self.config = EncoderConfig.model_validate(
            {
                "model": model_name,
                "adapter": adapter,
                "query_max_length": query_max_length,
                "passage_max_length": passage_max_length,
                "prompts": prompts,
                "lowercase": lowercase,
                "device": device,
                "dtype": dtype,
                "precision": precision,
                "batch_size": batch_size,
            }
        )

    @classmethod
    def for_collection(
        cls,
        collection: Collection,
        *,
        device: str | None = None,
        dtype: Dtype | None = None,
        precision: Precision | None = None,
        batch_size: int = 16,
    ) -> LLaRAEmbeddingFunction:
        """The function that embeds like ``collection``'s vectors, for plain-Chroma ``query_texts`` and ``add``.

        Reads the encoder that ``llara-rag index`` pinned in the collection's metadata, or else the one this
        class stored in its configuration; ``device``, ``dtype``, ``precision`` and ``batch_size`` are this
        machine's choice.
        """
        from llara_rag.indexing.store import ModelIdentity

        identity = ModelIdentity.from_metadata(collection.metadata)
        if identity is not None:
            settings: dict[str, Any] = {
                "model_name": identity.model,
                "adapter": identity.adapter,
                "fingerprint": identity.fingerprint,
            }
        else:
            stored = collection.configuration.get("embedding_function")
            if not isinstance(stored, LLaRAEmbeddingFunction):
                raise ModelMismatchError(
                    f"Collection {collection.name!r} records no LLaRA encoder; create it with `llara-rag index` "
                    "or with embedding_function=LLaRAEmbeddingFunction(...)."
                )
            settings = stored.get_config()
        return cls(**settings, device=device, dtype=dtype, precision=precision, batch_size=batch_size)

    @property
    def encoder(self) -> LLaRAEncoder:
        encoder = get_encoder(self.config)
        if self.pinned is not None and encoder.fingerprint != self.pinned:
            raise ModelMismatchError(
                f"The collection's vectors were made by encoder {self.pinned}, but {encoder.describe()} makes "
                "other vectors (its adapter's weights changed since, or, for a collection indexed at int8 before "
                "int8 shared the other precisions' vectors, the way int8 vectors are made); re-index into a new "
                "collection."
            )
        return encoder

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
            "adapter": adapter_name(config.adapter),
            "query_max_length": config.query_max_length,
            "passage_max_length": config.passage_max_length,
            "prompts": config.prompts.model_dump(),
            "lowercase": config.lowercase,
            "fingerprint": self.pinned or self.fingerprint,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LLaRAEmbeddingFunction:
        """Loads no model (Chroma calls this on every ``get_collection``); the fingerprint is checked on use."""
        return LLaRAEmbeddingFunction(**{k: v for k, v in config.items() if k not in MACHINE_SETTINGS})

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """Vectors already in a collection must stay comparable with the ones added after the update."""
        changed = [key for key in VECTOR_SETTINGS if old_config.get(key) != new_config.get(key)]
        if changed:
            raise ModelMismatchError(
                f"The collection's LLaRA embedding function cannot change {', '.join(changed)}: its stored "
                "vectors were made with the old settings. Create a new collection (or re-index) instead."
            )
