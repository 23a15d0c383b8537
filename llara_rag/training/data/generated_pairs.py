"""Generated-query pairs (InPars, Promptagator): the local generator writes questions a passage answers.

The instruction-tuned generator (the embedded SmolLM2-135M-Instruct unless another is named) samples
several questions per passage from a few-shot prompt; the 135M model asks about the prompt itself
("what is another question…") without the two worked examples. A question is kept only when it ends
as a question, is not a copy of another, and BM25 over *all* the corpus's passages ranks its own
passage in the top ``round_trip_top``: the round trip that filters Promptagator's questions, here with
the lexical ranker the hybrid already trusts, so a question too vague to find its passage is dropped.
Each passage keeps its best question (its passage ranked highest); no query or judgment of a
collection is ever read.

Sampling is slow on a CPU, so the replies are cached in ``questions.jsonl`` in the run's checkpoint
folder, keyed by passage and by everything that shapes a reply (generator, prompt, samples,
temperature, length): a resumed run, or one with another filter, writes none of them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llara_rag.training.data.corpus import document_key

if TYPE_CHECKING:
    from llama_index.core.llms import ChatMessage

logger = logging.getLogger(__name__)

QuestionWriter = Callable[[Sequence[str]], list[list[str]]]
"""Passages in, the raw replies sampled for each out (the generator's, or a test's fake)."""

CACHE_FILE = "questions.jsonl"
SYSTEM = "You write short search questions about a text."
INSTRUCTION = "Write a question that the following text answers.\n\nText: {passage}"
SHOTS = (
    (
        "The kidneys filter about 180 litres of blood plasma a day. Most of the water is reabsorbed, and the "
        "rest leaves the body as urine.",
        "How much blood plasma do the kidneys filter each day?",
    ),
    (
        "A compiler translates source code into machine code before the program runs, whereas an interpreter "
        "executes the source statement by statement.",
        "What is the difference between a compiler and an interpreter?",
    ),
)
"""Worked examples of general text, never of a collection measured on."""
TEMPERATURE = 0.7
REPETITION_PENALTY = 1.0
"""None: the chat's 1.1 steers a question away from its passage's words. With it, 29 of 81 replies on 27
Cranfield passages were usable questions and 2 passages kept one at round-trip top 3; without it, 28 of 33
and 7 of 11 (benchmarks/results/generated_pairs.md)."""
QUESTION_TOKENS = 40
BATCH_PASSAGES = 8
"""Passages a generation batch holds (times the samples of each): wide enough to keep both cores busy."""
MIN_PASSAGE_WORDS = 16
"""Shorter passages (a title alone) get an inverse-cloze pair: there is too little to ask about."""
QUESTION_WORDS = (4, 40)
EXAMPLES = 5
PREFIX = re.compile(r"^\s*(?:\d+[.)]\s*|(?:q|question)\s*\d*\s*[:.-]\s*)", re.IGNORECASE)


def question_prompt(passage: str) -> list[ChatMessage]:
    """The few-shot conversation that asks for one question ``passage`` answers."""
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="system", content=SYSTEM)]
    for text, question in SHOTS:
        messages.append(ChatMessage(role="user", content=INSTRUCTION.format(passage=text)))
        messages.append(ChatMessage(role="assistant", content=question))
    messages.append(ChatMessage(role="user", content=INSTRUCTION.format(passage=passage)))
    return messages


def prompt_digest() -> str:
    """Changes whenever the prompt does, so cached replies to an older prompt are not reused."""
    text = json.dumps([SYSTEM, INSTRUCTION, SHOTS, TEMPERATURE, REPETITION_PENALTY, QUESTION_TOKENS])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def clean_question(reply: str) -> str | None:
    """The reply's first question (its first line, numbering and "Question:" cut), or None when it is none."""
    line = next((line for line in reply.strip().splitlines() if line.strip()), "")
    line = PREFIX.sub("", line).strip().strip("\"'*").strip()
    end = line.find("?")
    if end < 0:
        return None
    question = line[: end + 1].strip()
    words = len(question.split())
    return question if QUESTION_WORDS[0] <= words <= QUESTION_WORDS[1] else None


def generator_writer(model: str, samples: int) -> QuestionWriter:
    """A writer that samples ``samples`` replies a passage from ``model``, loaded on first use."""
    from llara_rag.chat.generator import GeneratorConfig, LocalGenerator

    loaded: list[LocalGenerator] = []

    def write(passages: Sequence[str]) -> list[list[str]]:
        if not loaded:
            config = GeneratorConfig(
                model=model,
                max_new_tokens=QUESTION_TOKENS,
                temperature=TEMPERATURE,
                repetition_penalty=REPETITION_PENALTY,
            )
            loaded.append(LocalGenerator(config))
        return loaded[0].sample([question_prompt(passage) for passage in passages], samples)

    return write


class QuestionCache:
    """Replies already written, one JSON line a passage, appended as each batch finishes."""

    def __init__(self, path: Path | None, settings: str) -> None:
        self.path = path
        self.settings = settings
        self.replies: dict[str, list[str]] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: written again
                    continue
                if isinstance(row, dict) and row.get("settings") == settings:
                    self.replies[row["passage"]] = list(row["replies"])

    def get(self, passage: str) -> list[str] | None:
        return self.replies.get(document_key(passage))

    def add(self, passages: Sequence[str], replies: Sequence[list[str]]) -> None:
        rows = []
        for passage, written in zip(passages, replies):
            key = document_key(passage)
            self.replies[key] = list(written)
            rows.append(json.dumps({"passage": key, "settings": self.settings, "replies": list(written)}))
        if self.path is not None and rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n".join(rows) + "\n")


@dataclass
class GenerationReport:
    """What generation cost and what the filter kept, for the log and the model card."""

    generator: str
    round_trip_top: int
    passages: int = 0
    """Passages questions were asked for."""
    too_short: int = 0
    cached: int = 0
    """Passages whose replies came from the cache (not generated again)."""
    written: int = 0
    usable: int = 0
    """Replies that were a question, once cleaned and deduplicated."""
    kept: int = 0
    """Passages with a question that passed the round trip: one pair each."""
    no_usable: int = 0
    filtered_out: int = 0
    generated_kept: int = 0
    """Kept questions of the passages generated for in this run, not read from the cache."""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=dict)
    """A few kept questions, questions the round trip dropped and replies that were no question."""

    def as_dict(self) -> dict[str, object]:
        minutes = self.seconds / 60
        return {
            **self.__dict__,
            "seconds": round(self.seconds, 2),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "cpu_minutes": round(self.cpu_seconds / 60, 2),
            "questions_per_minute": round(self.written / minutes, 1) if minutes else None,
            "pairs_per_minute": round(self.generated_kept / minutes, 1) if minutes else None,
        }


def _write(
    passages: Sequence[str], writer: QuestionWriter, cache: QuestionCache, report: GenerationReport
) -> dict[int, list[str]]:
    """Every passage's replies: cached ones read, the others generated in batches and cached as they come."""
    from tqdm.auto import tqdm

    replies: dict[int, list[str]] = {}
    missing = []
    for index, passage in enumerate(passages):
        cached = cache.get(passage)
        if cached is None:
            missing.append(index)
        else:
            replies[index] = cached
    report.cached = len(passages) - len(missing)
    if not missing:
        return replies
    missing.sort(key=lambda index: len(passages[index]))  # batches of like lengths: less padding to read
    started, cpu = time.perf_counter(), time.process_time()
    with tqdm(total=len(missing), desc="Writing questions", unit="passage") as bar:
        for start in range(0, len(missing), BATCH_PASSAGES):
            batch = missing[start : start + BATCH_PASSAGES]
            written = writer([passages[index] for index in batch])
            cache.add([passages[index] for index in batch], written)
            for index, texts in zip(batch, written):
                replies[index] = texts
                report.written += len(texts)
            bar.update(len(batch))
    report.seconds = time.perf_counter() - started
    report.cpu_seconds = time.process_time() - cpu
    return replies


def round_trip(
    corpus: Sequence[str], candidates: dict[int, list[str]], top: int
) -> tuple[dict[int, str], list[str]]:
    """Each passage's best question whose passage BM25 ranks in the ``top`` of ``corpus``; and the dropped ones.

    ``candidates`` maps a passage's index in ``corpus`` to its (deduplicated) questions.
    """
    from llara_rag.indexing.lexical import bm25_top, build_bm25

    asked = [(index, question) for index, questions in candidates.items() for question in questions]
    if not asked:
        return {}, []
    ids = [str(index) for index in range(len(corpus))]
    ranked = bm25_top(build_bm25(corpus), ids, [question for _, question in asked], top)
    best: dict[int, tuple[int, str]] = {}
    dropped = []
    for (index, question), hits in zip(asked, ranked):
        order = sorted(hits, key=lambda doc: -hits[doc])
        rank = order.index(str(index)) if str(index) in order else None
        if rank is None:
            dropped.append(question)
        elif index not in best or rank < best[index][0]:
            best[index] = (rank, question)
    return {index: question for index, (_, question) in best.items()}, dropped


def generate_questions(
    corpus: Sequence[str],
    asked: Sequence[int],
    *,
    generator: str,
    samples: int,
    top: int,
    cache_path: Path | None,
    writer: QuestionWriter | None = None,
) -> tuple[dict[int, str], GenerationReport]:
    """One round-tripped question for each passage of ``asked`` (indices into ``corpus``) that has one.

    Passages missing from the result fall back to another maker; ``report`` says why each one did.
    ``writer`` replaces the generator (tests); it is only loaded when a passage is not cached.
    """
    report = GenerationReport(generator=generator, round_trip_top=top)
    settings = f"{generator}|{prompt_digest()}|{samples}"
    cache = QuestionCache(cache_path, hashlib.sha1(settings.encode()).hexdigest()[:16])
    long_enough = [index for index in asked if len(corpus[index].split()) >= MIN_PASSAGE_WORDS]
    cache_hits = {index: cache.get(corpus[index]) for index in long_enough}
    report.too_short = len(asked) - len(long_enough)
    report.passages = len(long_enough)
    replies = _write(
        [corpus[index] for index in long_enough],
        writer or generator_writer(generator, samples),
        cache,
        report,
    )
    seen: set[str] = set()  # a question asked of two passages is kept for the first only
    candidates: dict[int, list[str]] = {}
    unusable = []
    for position, index in enumerate(long_enough):
        questions = []
        for reply in replies[position]:
            question = clean_question(reply)
            if question is None:
                unusable.append(reply.strip())
            elif (key := document_key(question)) not in seen:
                seen.add(key)
                questions.append(question)
        report.usable += len(questions)
        if questions:
            candidates[index] = questions
        else:
            report.no_usable += 1
    kept, dropped = round_trip(corpus, candidates, top)
    report.kept = len(kept)
    fresh = {index for index in long_enough if cache_hits.get(index) is None}
    report.generated_kept = len(fresh & kept.keys())
    report.filtered_out = len(candidates) - len(kept)
    report.examples = {
        "kept": list(kept.values())[:EXAMPLES],
        "dropped": dropped[:EXAMPLES],
        "unusable": [reply[:200] for reply in unusable[:EXAMPLES]],
    }
    return kept, report
