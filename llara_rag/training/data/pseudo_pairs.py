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
- ``title``: a document's first line, when it is short and followed by text, against that text;
- ``generated``: a question the local generator wrote for the passage and BM25 round-tripped
  (:mod:`llara_rag.training.data.generated_pairs`), for at most ``max_passages`` passages drawn with the seed
  (what the contrastive stage will read), ``generated_share`` of them; the rest, and every passage without
  a kept question, get an ``ict`` pair, and the log says how many pairs each maker gave.

Any maker's pairs can carry ``negatives`` hard negatives each: passages BM25 ranks high for the query,
below its ``skip_top`` ranks (likely positives too) and never of the query's own document. With a
``teacher`` (BM25; the hybrid of BM25 and the start encoder, which beats both of its parts; or
``minilm-hybrid``, BM25 and all-MiniLM-L6-v2, a supervised encoder that never read the user's documents
either), they come from the teacher's own top ranks instead, unskipped, and the pair carries the
teacher's scores of them (z-scores over the query's candidates, as the hybrid fuses them), which the loss
then follows (GPL, Wang et al. 2022, with a teacher that needs no label).

Every pair carries its document's key, so two pairs of one document (or of duplicate documents) never serve
as each other's negatives (:mod:`llara_rag.training.losses.info_nce`).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.encoding.backbone import DEFAULT_MODEL
from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.errors import InvalidInputError
from llara_rag.retrieval.fusion import CANDIDATES, z_scores
from llara_rag.training.data.corpus import CorpusSummary, distinct_documents, document_key, window_texts
from llara_rag.training.data.generated_pairs import CACHE_FILE, QuestionWriter, generate_questions
from llara_rag.training.data.groups import GroupSample
from llara_rag.training.data.pairs import MiningConfig, mine_negatives, ranker

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from llara_rag.ranking.systems import RetrievalSystem

logger = logging.getLogger(__name__)

PairMaker = Literal["ict", "crop", "next", "title", "generated"]
Teacher = Literal["none", "bm25", "hybrid", "minilm-hybrid"]
TEACHER_DEPTH = 20
"""A teacher's negatives are drawn from its best this many ranks, less those of the query's own document."""
MINING = MiningConfig.model_fields
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
    generator: str = Field(
        default=DEFAULT_MODEL,
        description="generated: the instruction-tuned chat model that writes questions.",
    )
    questions_per_passage: int = Field(
        default=3, gt=0, description="generated: questions sampled per passage before the round-trip filter."
    )
    round_trip_top: int = Field(
        default=3,
        gt=0,
        description="generated: a question is kept when BM25 ranks its passage within this many of the corpus.",
    )
    max_passages: int = Field(
        default=-1,
        description="generated: passages drawn (with the seed) to make pairs from; at most every passage (<=0).",
    )
    generated_share: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="generated: share of those passages asked for a question (else ict).",
    )
    negatives: int = Field(default=0, ge=0, description="Hard negatives per pair, mined as teacher says.")
    teacher: Teacher = Field(
        default="none",
        description="What ranks and scores the negatives: none (BM25 ranks, below skip_top), bm25, hybrid "
        "(BM25 + teacher_encoder, z-scores at equal weights) or minilm-hybrid (BM25 + all-MiniLM-L6-v2).",
    )
    teacher_encoder: EncoderConfig | None = Field(
        default=None, description="hybrid: the encoder of the teacher's dense side (the start adapter)."
    )
    skip_top: int = Field(
        default=MINING["skip_top"].default, ge=0, description="Top ranks never mined (a teacher's: none)."
    )
    depth: int = Field(
        default=MINING["depth"].default, gt=0, description="Deepest rank mined (a teacher's: TEACHER_DEPTH)."
    )
    cache_dir: Path | None = Field(
        default=None, description=f"generated: where {CACHE_FILE} keeps the written questions."
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
    makers: dict[str, int] = field(default_factory=dict)
    """Pairs each maker gave (generated: the generated ones and the ict pairs that stood in)."""
    negatives: int = 0
    """Hard negatives per pair."""
    teacher: str = "none"
    """What ranked and scored the negatives."""
    generation: dict[str, object] | None = None
    """generated: what writing the questions cost and what the round trip kept."""

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


@dataclass(frozen=True)
class Passage:
    """A window of a document: its document's key, its text and the window after it."""

    key: int
    text: str
    following: str | None


def _passages(
    source: str | Path, tokenizer: PreTrainedTokenizerBase, config: PairConfig, summary: CorpusSummary
) -> tuple[list[Passage], int]:
    """The distinct windows of every distinct document (``title``: the documents whole), and how many were cut."""
    passages: list[Passage] = []
    seen: set[str] = set()
    cut = 0
    for key, (_, text) in enumerate(distinct_documents(source, summary)):
        if config.maker == "title":
            passages.append(Passage(key, text, None))
            cut += 1
            continue
        windows = window_texts(text, tokenizer, config.passage_tokens)
        cut += len(windows)
        for index, window in enumerate(windows):
            if document_key(window) in seen:  # boilerplate shared by documents: one pair, not a negative
                summary.duplicate_windows += 1
                continue
            seen.add(document_key(window))
            passages.append(Passage(key, window, windows[index + 1] if index + 1 < len(windows) else None))
    return passages, cut


def _ict(passage: str, rng: random.Random, config: PairConfig) -> tuple[tuple[str, str] | None, bool]:
    """An inverse-cloze pair, or crops when the passage has no two sentences (then True)."""
    pair = ict_pair(passage, rng, config.keep_sentence)
    if pair is not None:
        return pair, False
    pair = crop_pair(passage, rng, config.query_words)
    return pair, pair is not None


def _generated(
    passages: list[Passage], rng: random.Random, config: PairConfig, writer: QuestionWriter | None
) -> tuple[list[GroupSample], dict[str, int], int, dict[str, object]]:
    """Generated pairs for ``generated_share`` of the drawn passages, ict pairs for the rest; and the counts."""
    budget = len(passages) if config.max_passages <= 0 else min(config.max_passages, len(passages))
    drawn = rng.sample(range(len(passages)), budget)
    asked = drawn[: round(config.generated_share * budget)]
    questions, generation = generate_questions(
        [passage.text for passage in passages],
        asked,
        generator=config.generator,
        samples=config.questions_per_passage,
        top=config.round_trip_top,
        cache_path=config.cache_dir / CACHE_FILE if config.cache_dir else None,
        writer=writer,
    )
    samples = []
    makers = {"generated": 0, "ict": 0}
    fallbacks = 0
    for index in sorted(drawn):
        passage = passages[index]
        if index in questions:
            samples.append(GroupSample(questions[index], (passage.text,), (passage.key,)))
            makers["generated"] += 1
            continue
        pair, cropped = _ict(passage.text, rng, config)
        fallbacks += cropped
        if pair:
            samples.append(GroupSample(pair[0], (pair[1],), (passage.key,)))
            makers["ict"] += 1
    record = generation.as_dict()
    stood_in = (
        f"{generation.too_short} passages too short to ask about, {generation.no_usable} without a usable "
        f"question, {generation.filtered_out} whose questions failed the round trip (BM25 top "
        f"{config.round_trip_top}), {budget - len(asked)} not asked"
    )
    level = logging.WARNING if asked and not makers["generated"] else logging.INFO
    logger.log(
        level,
        "Generated pairs: %d generated and %d ict (%s) from %d of %d passages; %d questions written in %.1f "
        "CPU minutes, %d passages read from the cache%s",
        makers["generated"],
        makers["ict"],
        stood_in,
        budget,
        len(passages),
        generation.written,
        generation.cpu_seconds / 60,
        generation.cached,
        "; no generated pair (see the counts): a larger --round-trip-top or another --pair-generator may help"
        if level == logging.WARNING
        else "",
    )
    return samples, makers, fallbacks, record


def _with_negatives(
    samples: list[GroupSample], passages: list[Passage], config: PairConfig
) -> list[GroupSample]:
    """Each sample with ``config.negatives`` mined passages of other documents after its positive (and,
    with a teacher, its scores of them)."""
    from llara_rag.ranking.beir import Collection

    ids = [str(index) for index in range(len(passages))]
    by_document: dict[int, dict[str, int]] = {}
    for doc_id, passage in zip(ids, passages):
        by_document.setdefault(passage.key, {})[doc_id] = 1
    queries = {str(index): sample.query for index, sample in enumerate(samples)}
    collection = Collection(
        name="pairs",
        split="pairs",
        doc_ids=tuple(ids),
        doc_texts=tuple(passage.text for passage in passages),
        queries=queries,
        qrels={qid: by_document[sample.keys[0]] for qid, sample in zip(queries, samples)},
    )
    mining = MiningConfig(
        miner="bm25",
        negatives=config.negatives,
        skip_top=0 if config.teacher != "none" else config.skip_top,
        depth=TEACHER_DEPTH if config.teacher != "none" else config.depth,
        seed=config.seed,
    )
    run = _teacher(config).retrieve(collection, max(mining.depth, CANDIDATES))
    mined = mine_negatives(collection, run, mining)
    topped = []
    for qid, sample in zip(queries, samples):
        chosen = mined[qid] or [  # every other document ranked in the skipped top: any of them will do
            doc_id for doc_id, passage in zip(ids, passages) if passage.key != sample.keys[0]
        ]
        if not chosen:
            raise InvalidInputError(
                "Hard negatives need passages of at least two documents; add documents or train with "
                "--pair-negatives 0."
            )
        if len(chosen) < config.negatives:  # a corpus of few documents: repeat, so every group has one size
            chosen = random.Random(f"{config.seed}:{qid}").choices(chosen, k=config.negatives)
        teacher: tuple[float, ...] = ()
        if config.teacher != "none":
            # hybrid: already z-scores; bm25: none when the query shares no word with any passage
            scores = z_scores(run[qid]) if config.teacher == "bm25" and run[qid] else run[qid]
            floor = min(scores.values(), default=0.0)
            teacher = tuple(scores.get(doc_id, floor) for doc_id in chosen)
        negatives = [passages[int(doc_id)] for doc_id in chosen]
        topped.append(
            GroupSample(
                sample.query,
                (*sample.passages, *(passage.text for passage in negatives)),
                (*sample.keys, *(passage.key for passage in negatives)),
                teacher,
            )
        )
    if config.teacher == "none":
        where = f"BM25, ranks {config.skip_top + 1}-{config.depth}"
    else:
        where = f"the {config.teacher} teacher's best {TEACHER_DEPTH}, with its scores"
    logger.info(
        "Mined %d hard negatives per pair (%s, never of the pair's own document)", config.negatives, where
    )
    return topped


def _teacher(config: PairConfig) -> RetrievalSystem:
    """What ranks the candidates: BM25, or the hybrid of BM25 and a dense encoder, the start encoder or
    MiniLM (its vectors cached beside the checkpoints, so a resumed run does not encode the passages again)."""
    from llara_rag.ranking.baselines import minilm_system
    from llara_rag.ranking.cache import VectorCache
    from llara_rag.ranking.systems import BM25System, HybridSystem

    if config.teacher == "minilm-hybrid":
        dense = minilm_system(VectorCache(config.cache_dir))
    elif config.teacher == "hybrid":
        if config.teacher_encoder is None:
            raise InvalidInputError("A hybrid teacher needs an encoder: pass the start adapter's settings.")
        dense = ranker(
            MiningConfig(miner="dense", encoder=config.teacher_encoder, cache_dir=config.cache_dir)
        )
    else:
        return BM25System()
    return HybridSystem([BM25System(), dense], name="teacher")


def make_pairs(
    source: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    config: PairConfig,
    writer: QuestionWriter | None = None,
) -> tuple[list[GroupSample], PairsReport, CorpusSummary]:
    """One pair per passage of every distinct document of ``source`` (``title``: one per document;
    ``generated``: one per drawn passage). ``writer`` replaces the question generator (tests)."""
    summary = CorpusSummary()
    rng = random.Random(config.seed)
    passages, cut = _passages(source, tokenizer, config, summary)
    if not summary.documents:
        raise InvalidInputError(
            f"Found no document with text in {source}: the file or folder is empty or every entry was "
            "skipped (see the log). Give documents with text to adapt to."
        )
    samples: list[GroupSample] = []
    fallbacks = 0
    generation = None
    if config.maker == "generated":
        samples, makers, fallbacks, generation = _generated(passages, rng, config, writer)
    for passage in passages if config.maker != "generated" else ():
        if config.maker == "title":
            pair = title_pair(passage.text)
        elif config.maker == "next":
            following = passage.following
            pair = (tail(passage.text, tokenizer, config.query_tokens), following) if following else None
        elif config.maker == "ict":
            pair, cropped = _ict(passage.text, rng, config)
            fallbacks += cropped
        else:
            pair = crop_pair(passage.text, rng, config.query_words)
        if pair:
            samples.append(GroupSample(pair[0], (pair[1],), (passage.key,)))
    if config.maker != "generated":
        makers = {config.maker: len(samples)}
    if not samples:
        advice = (  # ict already falls back to crops
            f"give passages of at least {2 * MIN_QUERY_WORDS} words"
            if config.maker in ("ict", "crop", "generated")
            else f"try --pair-maker crop, which needs only {2 * MIN_QUERY_WORDS} words a passage"
        )
        raise InvalidInputError(
            f"The {config.maker} pair maker found no pair in {source} ({summary.documents} documents, "
            f"{cut} passages); {advice}."
        )
    if config.negatives:
        samples = _with_negatives(samples, passages, config)
    report = PairsReport(
        config.maker,
        summary.documents,
        cut,
        len(samples),
        fallbacks,
        makers,
        config.negatives,
        config.teacher,
        generation,
    )
    logger.info(
        "Label-free pairs (%s): %d pairs from %d passages of %d documents%s",
        config.maker,
        len(samples),
        cut,
        summary.documents,
        f" ({fallbacks} by crops: no two sentences)" if fallbacks else "",
    )
    return samples, report, summary
