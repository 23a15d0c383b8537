"""Chatting with an index: the condense-plus-context engine and its citations.

Each turn retrieves chunks for the question through any LlamaIndex retriever (``llara-rag chat`` uses the
collection's :class:`~llara_rag.retrieval.retriever.LLaRAHybridRetriever`, as ``llara-rag query`` does;
``ChatConfig.condense_questions`` has the generator first rewrite a follow-up into a standalone
question) and answers from them with the conversation as memory, or (``ChatConfig.answer``) quotes the
sentences that answer (:mod:`llara_rag.chat.grounded`). Every answer is followed by the chunks it was written
from: a generator can be wrong, and the sources let the reader check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field

from llara_rag.chat.grounded import ExtractConfig
from llara_rag.retrieval.retriever import RetrievalConfig, chunk_number, source_label
from llara_rag.settings import UserSettings

if TYPE_CHECKING:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.chat_engine.types import BaseChatEngine
    from llama_index.core.llms import LLM
    from llama_index.core.memory import Memory
    from llama_index.core.schema import NodeWithScore

    from llara_rag.chat.generator import GeneratorConfig
    from llara_rag.encoding.encoder import LLaRAEncoder

DEFAULT_SYSTEM_PROMPT = (
    "You are an assistant that answers questions about the user's own documents. "
    "Answer briefly, with the exact figures, names and times the documents give. "
    "If the documents do not say, answer that they do not say."
)
CONTEXT_PROMPT = (
    "Excerpts from the documents:\n\n{context_str}\n\nAnswer the next question from these excerpts only."
)
"""Short on purpose: a 135M-parameter generator follows a short instruction better than a long one."""

AnswerMode = Literal["auto", "generate", "extract"]


class ChatConfig(UserSettings):
    """How the chunks behind each answer are retrieved, and how much conversation is remembered."""

    model_config = ConfigDict(frozen=True)

    retrieval: RetrievalConfig = Field(
        default_factory=lambda: RetrievalConfig(top_k=3), description="Mode, weight and chunks per question."
    )
    memory_token_limit: int = Field(
        default=1024, gt=0, description="Tokens of conversation kept as memory; older turns fall out."
    )
    condense_questions: bool = Field(
        default=False,
        description="Rewrite each follow-up into a standalone question (by the generator) before retrieving. "
        "Off by default: the embedded 135M generator's rewrites carry earlier topics into new questions "
        "(the sample's Friday-deploy question came back as an on-call one and retrieved the on-call policy), "
        "while the user's own words retrieve the right file; a larger generator can be trusted with it.",
        json_schema_extra={"flag": "--condense"},
    )
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    answer: AnswerMode = Field(
        default="auto",
        description="How answers are written: extract quotes the retrieved sentences that answer, with their "
        "citations, and says when they do not (no generator is loaded); generate has the generator write "
        "freely from the excerpts; auto extracts with an in-process generator (the embedded one answers "
        "more questions correctly that way, see benchmarks/results/answers.md) and generates with an "
        "openai: or ollama: endpoint.",
        json_schema_extra={"flag": "--answer"},
    )
    extract: ExtractConfig = Field(default_factory=ExtractConfig, description="How sentences are quoted.")


def answer_mode(config: ChatConfig, generator: GeneratorConfig) -> Literal["generate", "extract"]:
    """``config.answer`` with ``auto`` decided for ``generator``: generate only with an endpoint."""
    if config.answer != "auto":
        return config.answer
    return "generate" if generator.endpoint is not None else "extract"


def build_chat_engine(
    retriever: BaseRetriever,
    llm: LLM | None,
    config: ChatConfig | None = None,
    encoder: LLaRAEncoder | None = None,
) -> BaseChatEngine:
    """A chat engine over ``retriever``: a condense-plus-context one answering with ``llm`` (any LlamaIndex
    LLM), or, with ``config.answer == "extract"`` or no ``llm``, the extractive one of
    :mod:`llara_rag.chat.grounded` (``encoder`` scores its sentences unless its scorer is BM25 alone).

    ``config.retrieval`` is for :func:`open_chat_session`, which builds the retriever from it.
    """
    from llama_index.core.chat_engine import CondensePlusContextChatEngine

    from llara_rag.chat.grounded import ExtractiveChatEngine

    config = config or ChatConfig()
    if config.answer == "extract" or llm is None:
        if config.answer == "generate":
            raise ValueError("answer='generate' needs an llm")
        return ExtractiveChatEngine(retriever, config.extract, encoder)
    return CondensePlusContextChatEngine.from_defaults(
        retriever=retriever,
        llm=llm,
        memory=chat_memory(llm, config.memory_token_limit),
        system_prompt=config.system_prompt,
        context_prompt=CONTEXT_PROMPT,
        skip_condense=not config.condense_questions,
    )


def chat_memory(llm: LLM, token_limit: int) -> Memory:
    """The conversation memory, counting tokens as ``llm`` does when it has a tokenizer (the local
    generator does): LlamaIndex's default counts with tiktoken's cl100k, another model's vocabulary."""
    from llama_index.core.memory import Memory

    tokenizer = getattr(llm, "tokenizer", None)
    count = getattr(tokenizer, "encode", None)
    return Memory.from_defaults(token_limit=token_limit, tokenizer_fn=count)


@dataclass(frozen=True)
class Citation:
    """One retrieved chunk, named so a reader can find it: the file and the chunk's place in it.

    ``score`` is the retriever's own, whose scale depends on the mode (cosine, BM25 or the hybrid's sum
    of z-scores) or, for other retrievers, on the store: it ranks, it does not compare across them.
    """

    number: int
    file_name: str
    chunk: int | None
    score: float | None
    text: str

    @property
    def label(self) -> str:
        return source_label(self.number, self.file_name, self.chunk, self.score)


def cite(nodes: Sequence[NodeWithScore]) -> list[Citation]:
    """Citations for the chunks an answer was written from, in retrieval order."""
    return [
        Citation(
            number=number,
            file_name=str(hit.node.metadata.get("file_name") or hit.node.ref_doc_id or hit.node.node_id),
            chunk=chunk_number(hit.node.node_id),
            score=hit.score,
            text=hit.node.get_content(),
        )
        for number, hit in enumerate(nodes, start=1)
    ]
