"""Query/passage pairs made from a user's documents alone, for the label-free contrastive stage.

Each maker turns a passage of a document (a window of ``passage_tokens`` tokens, so long documents give
several) into one (pseudo-query, positive passage) pair:
- ``ict``, inverse cloze (Lee et al. 2019): a sentence as the query, the rest of the passage as the positive
  (the sentence is left in it ``keep_sentence`` of the time, so exact overlap is not all it learns);
  a passage without two sentences falls back to crops;
- ``crop``, independent random crops (Contriever, Izacard et al. 2021): a short span as the query, an
  independent longer span of the same passage as the positive;
- ``next``, contrastive EBAR: the end of a window (``query_tokens``) through the query prompt against the
  window that follows it, what LLaRA's "predict the following passage" prompt asks for (windows without a
  successor are skipped);
- ``title``: a document's first line, when it is short and followed by text, against that text.

Every pair carries its document's key, so two pairs of one document (or of duplicate documents) never serve
as each other's negatives (:mod:`llara_rag.training.info_nce`).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.errors import InvalidInputError
from llara_rag.training.corpus import CorpusSummary, distinct_documents, document_key, window_texts
from llara_rag.training.supervised import GroupSample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PairMaker = Literal["ict", "crop", "next", "title"]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_QUERY_WORDS = 4
TITLE_MAX_WORDS = 24


class PairConfig(BaseModel):
    """Which maker builds the pairs and how."""

    model_config = ConfigDict(frozen=True)

    maker: PairMaker = Field(default="ict", description="ict, crop, next or title.")
    passage_tokens: int = Field(default=128, gt=0, description="Tokens of a passage pairs are made from.")
    query_tokens: int = Field(
        default=64, gt=0, description="next: the query is the end of its window, this many tokens."
    )
    keep_sentence: float = Field(
        default=0.1, ge=0, le=1, description="ict: how often the query sentence stays in its positive."
    )
    query_words: tuple[int, int] = Field(
        default=(4, 24), description="crop: the query span's shortest and longest length in words."
    )
    seed: int = 42


@dataclass
class PairsReport:
    """What the pairs were made from, for the log and the model card."""

    maker: str
    documents: int
    passages: int
    pairs: int
    fallbacks: int
    """Pairs made by crops because the passage had no two sentences (ict)."""

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _sentences(text: str) -> list[str]:
    return [sentence.strip() for sentence in SENTENCE_END.split(text) if sentence.strip()]


def _crop(words: list[str], rng: random.Random, shortest: int, longest: int) -> str:
    length = min(len(words), rng.randint(shortest, max(shortest, longest)))
    start = rng.randint(0, len(words) - length)
    return " ".join(words[start : start + length])


def crop_pair(passage: str, rng: random.Random, query_words: tuple[int, int]) -> tuple[str, str] | None:
    """A short span as the query and an independent span of half the passage or more as the positive."""
    words = passage.split()
    if len(words) < 2 * MIN_QUERY_WORDS:
        return None
    query = _crop(words, rng, query_words[0], min(query_words[1], len(words) // 2))
    positive = _crop(words, rng, (len(words) + 1) // 2, len(words))
    return query, positive


def ict_pair(passage: str, rng: random.Random, keep_sentence: float) -> tuple[str, str] | None:
    """A sentence of at least ``MIN_QUERY_WORDS`` words as the query, the passage (mostly without it) as the positive."""
    sentences = _sentences(passage)
    candidates = [i for i, s in enumerate(sentences) if len(s.split()) >= MIN_QUERY_WORDS]
    if len(sentences) < 2 or not candidates:
        return None
    chosen = rng.choice(candidates)
    rest = sentences if rng.random() < keep_sentence else sentences[:chosen] + sentences[chosen + 1 :]
    return sentences[chosen], " ".join(rest)


def title_pair(document: str) -> tuple[str, str] | None:
    """The first line, when short and followed by text, against the text under it."""
    first, _, rest = document.strip().partition("\n")
    first = first.strip().lstrip("#").strip()
    if not first or not rest.strip() or len(first.split()) > TITLE_MAX_WORDS:
        return None
    return first, rest.strip()


def tail(text: str, tokenizer: PreTrainedTokenizerBase, tokens: int) -> str:
    """The last ``tokens`` tokens of ``text``, as a slice of it (the query side keeps only its first ones)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= tokens else text[offsets[-tokens][0] :].strip()


def make_pairs(
    source: str | Path, tokenizer: PreTrainedTokenizerBase, config: PairConfig
) -> tuple[list[GroupSample], PairsReport, CorpusSummary]:
    """One pair per passage of every distinct document of ``source`` (``title``: one per document)."""
    summary = CorpusSummary()
    rng = random.Random(config.seed)
    samples: list[GroupSample] = []
    seen_passages: set[str] = set()
    passages = fallbacks = 0
    for key, (_, text) in enumerate(distinct_documents(source, summary)):
        if config.maker == "title":
            pair = title_pair(text)
            passages += 1
            if pair:
                samples.append(GroupSample(pair[0], (pair[1],), (key,)))
            continue
        windows = window_texts(text, tokenizer, config.passage_tokens)
        passages += len(windows)
        for index, window in enumerate(windows):
            if (
                document_key(window) in seen_passages
            ):  # boilerplate shared by documents: one pair, not a negative
                summary.duplicate_windows += 1
                continue
            seen_passages.add(document_key(window))
            if config.maker == "next":
                following = windows[index + 1] if index + 1 < len(windows) else None
                pair = (tail(window, tokenizer, config.query_tokens), following) if following else None
            elif config.maker == "ict":
                pair = ict_pair(window, rng, config.keep_sentence)
                if pair is None:
                    pair = crop_pair(window, rng, config.query_words)
                    fallbacks += pair is not None
            else:
                pair = crop_pair(window, rng, config.query_words)
            if pair:
                samples.append(GroupSample(pair[0], (pair[1],), (key,)))
    report = PairsReport(config.maker, summary.documents, passages, len(samples), fallbacks)
    if not summary.documents:
        raise InvalidInputError(
            f"Found no document with text in {source}: the file or folder is empty or every entry was "
            "skipped (see the log). Give documents with text to adapt to."
        )
    if not samples:
        advice = (  # ict already falls back to crops
            f"give passages of at least {2 * MIN_QUERY_WORDS} words"
            if config.maker in ("ict", "crop")
            else f"try --pair-maker crop, which needs only {2 * MIN_QUERY_WORDS} words a passage"
        )
        raise InvalidInputError(
            f"The {config.maker} pair maker found no pair in {source} ({summary.documents} documents, "
            f"{passages} passages); {advice}."
        )
    logger.info(
        "Label-free pairs (%s): %d pairs from %d passages of %d documents%s",
        config.maker,
        len(samples),
        passages,
        summary.documents,
        f" ({fallbacks} by crops: no two sentences)" if fallbacks else "",
    )
    return samples, report, summary
