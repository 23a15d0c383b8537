"""The bodies the service reads and writes: OpenAI's embeddings API, and llara-rag's search and chat.

The embeddings request is OpenAI's, plus ``input_type`` (the name other embedding providers use) to ask
for LLaRA's query side. OpenAI clients send fields this service does not use (``user``): they are ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.fusion import FusionWeighting, RetrievalMode
from llara_rag.retrieval import Hit


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts (token arrays are refused: LLaRA wraps the text in its prompts)."
    )
    model: str | None = Field(default=None, description="Ignored: the service embeds with its one model.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: little-endian float32 bytes, as OpenAI's clients ask for."
    )
    input_type: Literal["query", "passage", "document"] = Field(
        default="passage",
        description="query: LLaRA's EBAR prompt, for search questions; passage (or document): the EBAE "
        "prompt, for the texts searched.",
    )
    dimensions: int | None = Field(default=None, description="Must be the model's dimension when given.")


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens encoded, LLaRA's prompt tokens included.")
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    k: int = Field(default=5, gt=0, le=100, description="Chunks returned.")
    mode: RetrievalMode | None = Field(default=None, description="The service's mode when not given.")
    alpha: float | None = Field(default=None, ge=0, le=1, description="The dense side's weight (hybrid).")
    fusion: FusionWeighting | None = Field(
        default=None, description="head: each side's weight scaled by its head strength per query; fixed."
    )
    where: dict[str, str | int | float] = Field(
        default_factory=dict, description="Only chunks whose metadata equals every item (e.g. file_name)."
    )


class SearchResponse(BaseModel):
    mode: RetrievalMode
    results: list[Hit]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1)
    session_id: str | None = Field(
        default=None, description="Continues that conversation; a new one starts when absent or unknown."
    )


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "llara-rag"


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    fingerprint: str = Field(description="Equal fingerprints mean interchangeable vectors.")
    dimension: int
    collection: str | None = Field(description="The collection searched; None when serving embeddings only.")
    chunks: int | None
    chat: bool = Field(description="Whether /v1/chat answers (a generator was loaded).")
    auth: bool = Field(description="Whether /v1/ routes need an API key.")


class ErrorDetail(BaseModel):
    message: str = Field(description="What was wrong, and the fix.")
    type: str
    code: int = Field(description="The HTTP status.")


class ErrorResponse(BaseModel):
    """OpenAI's error body, which every refusal and failure of the service answers."""

    error: ErrorDetail
