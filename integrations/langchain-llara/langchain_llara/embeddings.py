"""LLaRAEmbeddings: the LangChain face of the llara-rag encoder.

Documents take the EBAE prompt and queries the EBAR prompt. The weights come from ``get_encoder``, so
this class, ``LLaRAEmbedding`` (LlamaIndex) and ``LLaRAEmbeddingFunction`` (Chroma) with the same
settings share one loaded model and give the same vectors (equal ``fingerprint``).
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from pydantic import ConfigDict, Field, PrivateAttr

from llara_rag.encoding.encoder import EncoderConfig, EncoderSettings, LLaRAEncoder, get_encoder


class LLaRAEmbeddings(EncoderSettings, Embeddings):
    """LLaRA embeddings for LangChain; the async methods run the encoder in a worker thread.

    Empty or whitespace-only texts raise ``llara_rag.InvalidInputError``: drop them before embedding.
    """

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    batch_size: int = Field(default=16, gt=0, description="Texts per forward pass.")

    _encoder: LLaRAEncoder = PrivateAttr()

    def model_post_init(self, context: object) -> None:
        self._encoder = get_encoder(self.encoder_config)

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.to_encoder_config(self.batch_size)

    @property
    def encoder(self) -> LLaRAEncoder:
        return self._encoder

    @property
    def fingerprint(self) -> str:
        return self._encoder.fingerprint

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._encoder.encode_queries([text])[0].tolist()
