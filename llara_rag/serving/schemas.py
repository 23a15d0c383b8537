"""The bodies the service reads and writes: OpenAI's embeddings and chat completions; search; chat.

The embeddings request is OpenAI's, plus ``input_type`` (the name other embedding providers use) to ask
for LLaRA's query side. OpenAI clients send fields this service does not use (``user``): they are ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.retrieval.fusion import FusionWeighting, RetrievalMode
from llara_rag.retrieval.retriever import Hit


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
    searched: str = Field(
        description="The query as searched: its misspelt words corrected against the collection's words"
    )
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
    chat: bool = Field(description="Whether /v1/chat answers (quoting, or with the generator loaded).")
    auth: bool = Field(description="Whether /v1/ routes need an API key.")


class ErrorDetail(BaseModel):
    message: str = Field(description="What was wrong, and the fix.")
    type: str
    code: int = Field(description="The HTTP status.")


class ErrorResponse(BaseModel):
    """OpenAI's error body, which every refusal and failure of the service answers."""

    error: ErrorDetail


class ChatCompletionMessage(BaseModel):
    """One message of OpenAI's chat API; content parts other than text are refused."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.get("type") != "text" for part in self.content):
            raise ValueError("only text content parts are read; send the message as text.")
        return "".join(str(part.get("text", "")) for part in self.content)


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completions request: the last user message is answered from the collection, the ones
    before it are the conversation; sampling fields (``temperature``, ``max_tokens``, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, description="Ignored: the service answers with its own settings.")
    messages: list[ChatCompletionMessage] = Field(min_length=1)
    stream: bool = False


class ChatCompletionChoice(BaseModel):
    index: int = 0
    message: dict[str, str]
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    """OpenAI's chat completion, plus ``sources``: the retrieved chunks the answer cites as [1], [2], ..."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    sources: list[dict[str, Any]]
