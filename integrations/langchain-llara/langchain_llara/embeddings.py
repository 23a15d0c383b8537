"""LLaRAEmbeddings: the LangChain face of the llara-rag encoder.

Documents take the EBAE prompt and queries the EBAR prompt. The weights come from ``get_encoder``, so
this class, ``LLaRAEmbedding`` (LlamaIndex) and ``LLaRAEmbeddingFunction`` (Chroma) with the same
settings share one loaded model and give the same vectors (equal ``fingerprint``).
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from llara_rag.backbone import DEFAULT_MODEL
from llara_rag.encoder import EncoderConfig, LLaRAEncoder, get_encoder
from llara_rag.prompts import DEFAULT_PROMPTS, LLaRAPrompts


class LLaRAEmbeddings(BaseModel, Embeddings):
    """LLaRA embeddings for LangChain; the async methods run the encoder in a worker thread.

    Empty or whitespace-only texts raise ``llara_rag.InvalidInputError``: drop them before embedding.
    """

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model_name: str = Field(
        default=DEFAULT_MODEL, description="Embedded alias, .gguf file, local folder or Hub id."
    )
    adapter: str | None = Field(default=None, description="A LoRA adapter directory from `llara-rag adapt`.")
    query_max_length: int = Field(default=128, gt=0)
    passage_max_length: int = Field(default=512, gt=0)
    prompts: LLaRAPrompts = Field(default=DEFAULT_PROMPTS)
    device: str | None = Field(default=None, description="None picks CUDA when present.")
    dtype: str | None = Field(default=None, description="None: fp32 on CPU, bf16 on GPU.")
    batch_size: int = Field(default=16, gt=0, description="Texts per forward pass.")

    _encoder: LLaRAEncoder = PrivateAttr()

    def model_post_init(self, context: object) -> None:
        self._encoder = get_encoder(self.encoder_config)

    @property
    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            model=self.model_name,
            adapter=self.adapter,
            query_max_length=self.query_max_length,
            passage_max_length=self.passage_max_length,
            prompts=self.prompts,
            batch_size=self.batch_size,
            device=self.device,
            dtype=self.dtype,
        )

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
