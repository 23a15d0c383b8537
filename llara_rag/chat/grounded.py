"""Grounded answers: the retrieved chunks' sentences that best answer the question, quoted with citations.

The embedded 135M generator writes fluent sentences that the documents do not support (it answered
"4 seconds" for a SEV1 acknowledgement the on-call policy puts at 5 minutes). An extractive answer cannot
invent: it is the best sentence of the retrieved chunks, quoted word for word and numbered as the sources
listed under it, and a second one when it scores close to the first. Sentences are scored against the
question by BM25 over the candidate sentences, by the LLaRA encoder (query side against passage side), or
both (z-scores summed, as the hybrid retriever fuses). Every question is scored with the previous
question's words too, at a lower weight; a short follow-up ("what about a SEV2?", at most
``ExtractConfig.follow_up_terms`` terms) is also retrieved with them, as condensing would do, without
a generator rewriting it.

When the best sentence holds too little of the question's terms (IDF-weighted over the candidate
sentences; words that frame a question, such as "quickly" or "often", left out), the answer says the
documents do not say, and shows the closest sentence. ``benchmarks/answers.py`` measures
the scorers and the threshold on the sample handbook's question set.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.chat_engine.types import (
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.tools import ToolOutput
from pydantic import BaseModel, ConfigDict, Field

from llara_rag.retrieval.fusion import z_scores

if TYPE_CHECKING:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.schema import NodeWithScore

    from llara_rag.encoding.encoder import LLaRAEncoder

logger = logging.getLogger(__name__)

SentenceScorer = Literal["bm25", "encoder", "both"]
NOT_ANSWERED = "The documents retrieved do not say."


class ExtractConfig(BaseModel):
    """How the sentences of an extractive answer are chosen, and when it says the documents do not answer."""

    model_config = ConfigDict(frozen=True)

    scorer: SentenceScorer = Field(
        default="bm25",
        description="What ranks the sentences against the question: bm25, the encoder, or both.",
    )
    max_sentences: int = Field(default=2, gt=0, description="Sentences quoted at most.")
    close: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="A further sentence is quoted when its term coverage is at least this share of the best's.",
    )
    min_coverage: float = Field(
        default=0.35,
        ge=0,
        le=1,
        description="Below this share of the question's terms in the best sentence, each weighted by its IDF "
        "over the collection, the answer says the documents do not say.",
    )
    previous_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Weight of the previous question's words in the sentences' scores.",
    )
    follow_up_terms: int = Field(
        default=2,
        ge=0,
        description="A question of at most this many terms that follows another is retrieved with the "
        "previous question's words too.",
    )


@dataclass(frozen=True)
class Sentence:
    text: str
    source: int
    """1-based number of the chunk it came from, as the sources are listed."""


def sentences(nodes: Sequence[NodeWithScore]) -> list[Sentence]:
    """The sentences of the chunks, in retrieval order, each once; headings dropped, list items kept whole.

    Paragraphs wrapped over lines are joined first; a chunk's text may start or end mid-sentence (chunks
    overlap), and such a fragment is a candidate like any other.
    """
    from llama_index.core.node_parser.text.utils import split_by_sentence_tokenizer

    split = split_by_sentence_tokenizer()
    found: list[Sentence] = []
    seen: set[str] = set()
    for number, hit in enumerate(nodes, start=1):
        for block in _blocks(hit.node.get_content()):
            for piece in split(block):
                text = " ".join(piece.replace("**", "").split())
                if len(text.split()) >= 3 and text not in seen:
                    seen.add(text)
                    found.append(Sentence(text, number))
    return found


FRAMING = frozenset(
    {
        *("quickly", "fast", "often", "long", "much", "many", "happens", "happen", "get", "gets"),
        *("called", "call", "need", "needs", "must", "can", "may", "allowed", "way", "kind"),
    }
)
"""Words that frame a question rather than name what it asks about: left out of the coverage."""

_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items, each on one line; Markdown headings left out."""
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            blocks.append([])
        elif _ITEM.match(line):
            blocks.append([_ITEM.sub("", line).strip()])
        else:
            blocks[-1].append(stripped)
    return [" ".join(block) for block in blocks if block]


def _terms(texts: Sequence[str]) -> list[list[str]]:
    from llara_rag.indexing.lexical import tokenize

    tokenized = tokenize(texts)
    vocabulary = {index: term for term, index in tokenized.vocab.items()}
    return [[vocabulary[index] for index in ids if vocabulary.get(index)] for ids in tokenized.ids]


def coverage(
    question: str, candidates: Sequence[str], idf: Callable[[str], float] | None = None
) -> np.ndarray:
    """Per candidate, the share of the question's terms it contains, each term weighted by its IDF: a
    sentence that answers holds the rare words.

    ``idf`` is the collection's (:meth:`LexicalIndex.idf`) where the retriever has it: a word used all over
    the collection, such as the company's name, says little about whether a sentence answers, and a word
    the collection never uses weighs most. Without it, the IDF over the candidates stands in.
    """
    terms = _terms([question, *candidates])
    framing = set(_terms([" ".join(FRAMING)])[0])
    asked, held = set(terms[0]) - framing, [set(sentence) for sentence in terms[1:]]
    if not asked or not held:
        return np.zeros(len(candidates))
    if idf is None:
        weight = {term: math.log(1 + (len(held) + 1) / (1 + sum(term in s for s in held))) for term in asked}
    else:
        weight = {term: idf(term) for term in asked}
    total = sum(weight.values())
    return np.array([sum(weight[term] for term in asked & s) / total for s in held])


def bm25_scores(question: str, candidates: Sequence[str]) -> np.ndarray:
    from llara_rag.indexing.lexical import build_bm25

    index = build_bm25(candidates)
    return np.asarray(index.get_scores(_terms([question])[0]), dtype=float)


def encoder_scores(
    encoder: LLaRAEncoder, questions: Sequence[tuple[str, float]], candidates: Sequence[str]
) -> np.ndarray:
    """Cosine similarities of the candidates (passage side) with the questions (query side), weighted."""
    weights = np.array([weight for _, weight in questions])
    queries = encoder.encode_queries([text for text, _ in questions])
    return encoder.encode_passages(list(candidates)) @ (queries.T @ weights)


def _fused(parts: Sequence[np.ndarray]) -> np.ndarray:
    fused = np.zeros(len(parts[0]))
    for part in parts:
        z = z_scores({str(i): float(v) for i, v in enumerate(part)})
        fused += np.array([z[str(i)] for i in range(len(part))])
    return fused


@dataclass(frozen=True)
class Extract:
    """The chosen sentences (best first), the best one's coverage, and whether they answer."""

    quoted: list[Sentence]
    coverage: float
    answers: bool

    def text(self) -> str:
        quotes = " ".join(f'"{sentence.text}" [{sentence.source}]' for sentence in self.quoted)
        if self.answers:
            return quotes
        return f"{NOT_ANSWERED} Closest: {quotes}" if quotes else NOT_ANSWERED


def extract(
    question: str,
    nodes: Sequence[NodeWithScore],
    config: ExtractConfig | None = None,
    *,
    encoder: LLaRAEncoder | None = None,
    previous: str | None = None,
    idf: Callable[[str], float] | None = None,
) -> Extract:
    """The sentences of ``nodes`` that best answer ``question`` (``previous``: the question before it;
    ``idf``: the collection's term weights, see :func:`coverage`)."""
    config = config or ExtractConfig()
    candidates = sentences(nodes)
    if not candidates:
        return Extract([], 0.0, False)
    texts = [sentence.text for sentence in candidates]
    asked = [(question, 1.0)] + ([(previous, config.previous_weight)] if previous else [])
    parts = []
    if config.scorer in ("bm25", "both"):
        parts.append(sum(weight * bm25_scores(text, texts) for text, weight in asked))
    if config.scorer in ("encoder", "both"):
        if encoder is None:
            raise ValueError(f"the {config.scorer!r} sentence scorer needs the encoder")
        parts.append(encoder_scores(encoder, asked, texts))
    score = _fused(parts) if len(parts) > 1 else parts[0]
    covered = coverage(search_text(question, previous, config), texts, idf)
    order = np.argsort(-score, kind="stable")
    best = int(order[0])
    quoted = [candidates[best]]
    for index in order[1:]:
        if len(quoted) == config.max_sentences:
            break
        if covered[index] > 0 and covered[index] >= config.close * covered[best]:
            quoted.append(candidates[int(index)])
    return Extract(quoted, float(covered[best]), float(covered[best]) >= config.min_coverage)


def search_text(question: str, previous: str | None, config: ExtractConfig) -> str:
    """What is retrieved for ``question``: with the previous question first when it is a short follow-up."""
    if previous and len(_terms([question])[0]) <= config.follow_up_terms:
        return f"{previous} {question}"
    return question


def collection_idf(retriever: BaseRetriever) -> Callable[[str], float] | None:
    """The IDF of terms over the retriever's collection, where it keeps a lexical index."""
    lexical = getattr(retriever, "lexical", None)
    return None if lexical is None or lexical.bm25 is None else lexical.idf


class ExtractiveChatEngine(BaseChatEngine):
    """A chat engine whose answers are :func:`extract`'s quotes: retrieval as the generating engine does
    (the user's own words), no generator, the conversation kept for follow-ups and for ``/reset``."""

    def __init__(
        self,
        retriever: BaseRetriever,
        config: ExtractConfig | None = None,
        encoder: LLaRAEncoder | None = None,
    ) -> None:
        self.retriever = retriever
        self.config = config or ExtractConfig()
        self.encoder = encoder
        self._history: list[ChatMessage] = []

    @property
    def chat_history(self) -> list[ChatMessage]:
        return list(self._history)

    def reset(self) -> None:
        self._history = []

    def _answer(
        self, message: str, chat_history: list[ChatMessage] | None
    ) -> tuple[str, list[NodeWithScore], ToolOutput]:
        history = list(self._history if chat_history is None else chat_history)
        previous = next((m.content for m in reversed(history) if m.role == MessageRole.USER), None)
        nodes = self.retriever.retrieve(search_text(message, previous, self.config))
        answer = extract(
            message,
            nodes,
            self.config,
            encoder=self.encoder,
            previous=previous,
            idf=collection_idf(self.retriever),
        ).text()
        source = ToolOutput(
            tool_name="retriever",
            content=str(nodes),
            raw_input={"message": search_text(message, previous, self.config)},
            raw_output=nodes,
        )
        history.extend(
            [
                ChatMessage(role=MessageRole.USER, content=message),
                ChatMessage(role="assistant", content=answer),
            ]
        )
        if chat_history is None:
            self._history = history
        return answer, nodes, source

    def chat(
        self, message: str, chat_history: list[ChatMessage] | None = None, **_: Any
    ) -> AgentChatResponse:
        answer, nodes, source = self._answer(message, chat_history)
        return AgentChatResponse(response=answer, sources=[source], source_nodes=nodes)

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None, **_: Any
    ) -> StreamingAgentChatResponse:
        answer, nodes, source = self._answer(message, chat_history)
        stream = iter([ChatResponse(message=ChatMessage(role="assistant", content=answer), delta=answer)])
        return StreamingAgentChatResponse(
            chat_stream=stream, sources=[source], source_nodes=nodes, is_writing_to_memory=False
        )

    async def achat(
        self, message: str, chat_history: list[ChatMessage] | None = None, **_: Any
    ) -> AgentChatResponse:
        return self.chat(message, chat_history)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None, **_: Any
    ) -> StreamingAgentChatResponse:
        return self.stream_chat(message, chat_history)
