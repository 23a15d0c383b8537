"""Generated-query pairs: cleaning, the BM25 round trip, the cache, fallbacks to ict, hard negatives, the report."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from llara_rag.encoding.adapter import read_adapter_info
from llara_rag.errors import InvalidInputError
from llara_rag.training import AdaptationArguments, adapt
from llara_rag.training.data.generated_pairs import CACHE_FILE, clean_question
from llara_rag.training.data.pseudo_pairs import PairConfig, make_pairs

CATS = (
    "Cats purr when they are happy and warm. A cat also purrs when it is hurt, which is why vets listen "
    "closely. The purr comes from the muscles of the larynx."
)
RUST = (
    "Rust is a systems programming language without a garbage collector. Its borrow checker proves at "
    "compile time that references never outlive the data they point to."
)
WING = (
    "A wing makes lift because the air pressure above it is lower than the pressure below it. The flow "
    "over a curved upper surface speeds up, and faster air presses less on the wing."
)
MARKET = (
    "The stock market fell on Monday after the central bank raised interest rates. Shares of banks rose "
    "while technology stocks lost the most value in a single day."
)
SHORT = "Dense retrieval embeds text. It then searches vectors."
"""Too short to ask about (under 16 words), still two sentences for an inverse-cloze pair."""

QUESTIONS = {
    "Cats": ["Question: Why do cats purr when they are happy?", "Why do cats purr?"],
    "Rust": ["1. What does the borrow checker of Rust prove at compile time?"],
    "A wing": ["Why is the stock market lower on a wing?"],  # its passage is not BM25's first for it
    "The stock": ["Sure! Here is a question for you", "Stocks."],  # nothing usable
}


class FakeWriter:
    """Replies by each passage's first words, counting the passages it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, passages: Sequence[str]) -> list[list[str]]:
        self.asked.extend(passages)
        return [
            next(replies for start, replies in QUESTIONS.items() if p.startswith(start)) for p in passages
        ]


def _corpus(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_backbone_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_backbone_dir)


def test_replies_are_cut_to_their_first_question():
    assert clean_question("Question: Why do cats purr?\nA: because") == "Why do cats purr?"
    assert clean_question('1. "What is a borrow checker?" It is') == "What is a borrow checker?"
    assert clean_question("Q: How much lift does a wing make? And why?") == "How much lift does a wing make?"
    assert clean_question("This text describes how cats purr.") is None, "not a question"
    assert clean_question("Why?") is None, "too short to retrieve with"
    assert clean_question("") is None


def test_round_trip_keeps_questions_that_find_their_passage_and_the_rest_fall_back_to_ict(
    tmp_path, tokenizer, caplog
):
    docs = _corpus(tmp_path, [CATS, RUST, WING, MARKET, SHORT])
    writer = FakeWriter()
    config = PairConfig(maker="generated", round_trip_top=1, cache_dir=tmp_path / "run")
    with caplog.at_level(logging.INFO):
        samples, report, _ = make_pairs(docs, tokenizer, config, writer=writer)
    pairs = {sample.keys[0]: (sample.query, sample.passages[0]) for sample in samples}  # by document
    assert pairs[0] == ("Why do cats purr when they are happy?", CATS), "the first of two kept questions"
    assert pairs[1] == ("What does the borrow checker of Rust prove at compile time?", RUST)
    assert pairs[2][0] in WING and pairs[2][1] != WING, "dropped by the round trip: an ict pair instead"
    assert pairs[3][0] in MARKET, "nothing usable written: ict"
    assert SHORT not in writer.asked and pairs[4][0] in SHORT, "too short to ask about: ict"
    assert report.makers == {"generated": 2, "ict": 3}
    generation = report.as_dict()["generation"]
    assert isinstance(generation, dict)
    assert (generation["passages"], generation["too_short"], generation["no_usable"]) == (4, 1, 1)
    assert (generation["filtered_out"], generation["kept"], generation["written"]) == (1, 2, 6)
    assert generation["questions_per_minute"] is not None and generation["pairs_per_minute"] is not None
    assert (
        "2 generated and 3 ict (1 passages too short to ask about, 1 without a usable question, 1 whose"
        in (caplog.text)
    )
    wider = PairConfig(maker="generated", round_trip_top=4, cache_dir=tmp_path / "run")
    samples, report, _ = make_pairs(docs, tokenizer, wider, writer=FakeWriter())
    assert report.makers["generated"] == 3, "the wing question finds its passage within BM25's top 4"


def test_passages_are_asked_about_in_batches_of_like_length(monkeypatch):
    """A batch is padded to its longest prompt: passages go to the generator shortest first."""
    from llara_rag.training.data import generated_pairs

    monkeypatch.setattr(generated_pairs, "BATCH_PASSAGES", 2)
    batches: list[list[str]] = []

    def writer(passages: Sequence[str]) -> list[list[str]]:
        batches.append(list(passages))
        return [["Why?"] for _ in passages]

    corpus = [" ".join(["word"] * (20 + 10 * (index % 4))) + f" {index}" for index in range(8)]
    generated_pairs.generate_questions(
        corpus, range(8), generator="fake", samples=1, top=1, cache_path=None, writer=writer
    )
    lengths = [[len(text.split()) for text in batch] for batch in batches]
    assert lengths == [[21, 21], [31, 31], [41, 41], [51, 51]]


def test_a_second_run_reads_every_question_from_the_cache(tmp_path, tokenizer):
    docs = _corpus(tmp_path, [CATS, RUST, WING, MARKET])
    config = PairConfig(maker="generated", round_trip_top=1, cache_dir=tmp_path / "run")
    first, _, _ = make_pairs(docs, tokenizer, config, writer=FakeWriter())
    assert len((tmp_path / "run" / CACHE_FILE).read_text().splitlines()) == 4

    def refuse(passages: Sequence[str]) -> list[list[str]]:
        raise AssertionError(f"generated again for {len(passages)} passages")

    again, report, _ = make_pairs(docs, tokenizer, config, writer=refuse)
    assert [(s.query, s.passages) for s in again] == [(s.query, s.passages) for s in first]
    assert report.generation is not None
    assert (report.generation["cached"], report.generation["written"]) == (4, 0)
    other = FakeWriter()
    make_pairs(docs, tokenizer, config.model_copy(update={"questions_per_passage": 5}), writer=other)
    assert len(other.asked) == 4, "other sampling settings are not the cached questions"


def test_a_generator_that_writes_nothing_usable_leaves_ict_pairs_and_says_so(tmp_path, tokenizer, caplog):
    docs = _corpus(tmp_path, [CATS, RUST, WING, MARKET])
    samples, report, _ = make_pairs(
        docs, tokenizer, PairConfig(maker="generated"), writer=lambda passages: [["Sure!"] for _ in passages]
    )
    assert len(samples) == 4 and report.makers == {"generated": 0, "ict": 4}
    assert "0 generated and 4 ict" in caplog.text and "no generated pair" in caplog.text
    with pytest.raises(InvalidInputError, match="found no pair"):
        make_pairs(
            _corpus(tmp_path, ["too short"]), tokenizer, PairConfig(maker="generated"), writer=FakeWriter()
        )


def test_passages_are_drawn_up_to_the_budget_and_shared_with_ict(tmp_path, tokenizer):
    docs = _corpus(tmp_path, [CATS, RUST, WING, MARKET])
    writer = FakeWriter()
    config = PairConfig(maker="generated", max_passages=3, generated_share=0.34, round_trip_top=4)
    samples, report, _ = make_pairs(docs, tokenizer, config, writer=writer)
    assert len(samples) == 3 and len(writer.asked) == 1 and sum(report.makers.values()) == 3


def test_hard_negatives_come_from_other_documents_below_the_top_ranks(tmp_path, tokenizer):
    docs = _corpus(tmp_path, [CATS, RUST, WING, MARKET])
    config = PairConfig(maker="generated", negatives=2, skip_top=1, round_trip_top=4)
    samples, report, _ = make_pairs(docs, tokenizer, config, writer=FakeWriter())
    assert report.negatives == 2
    for sample in samples:
        assert len(sample.passages) == len(sample.keys) == 3
        assert sample.keys[0] not in sample.keys[1:], "never a passage of the pair's own document"
    assert all(len(set(sample.passages)) == 3 for sample in samples)


def test_run_budget_is_what_the_contrastive_stage_reads(tmp_path):
    args = AdaptationArguments(
        output_dir=str(tmp_path), pair_maker="generated", contrastive_max_steps=5, contrastive_batch_size=8
    )
    pairs = args.pairs_for_run(world=2, start=None)
    assert (pairs.max_passages, pairs.cache_dir) == (80, tmp_path)
    epochs = AdaptationArguments(output_dir=str(tmp_path), pair_maker="generated", contrastive_max_steps=-1)
    assert epochs.pairs_for_run(world=1, start=None).max_passages == -1
    with pytest.raises(InvalidInputError, match="--pair-maker"):
        AdaptationArguments(output_dir=str(tmp_path), pair_maker="generated", generated_share=2.0)


def test_adapt_trains_on_generated_pairs_with_hard_negatives(
    tiny_chat_model_dir, tiny_backbone_dir, tmp_path
):
    """The tiny random chat model writes the questions (mostly unusable: ict stands in) and training runs
    on groups of a positive and a mined negative; the record says how many pairs each maker gave."""
    docs = _corpus(
        tmp_path, [CATS, RUST, WING, MARKET, CATS.replace("Cats", "Dogs"), RUST.replace("Rust", "Go")]
    )
    args = AdaptationArguments(
        output_dir=str(tmp_path / "checkpoints"),
        model=str(tiny_backbone_dir),
        stages="contrastive",
        pair_maker="generated",
        pair_generator=str(tiny_chat_model_dir),
        questions_per_passage=2,
        pair_negatives=1,
        contrastive_max_steps=1,
        contrastive_batch_size=4,
        chunk_tokens=24,
        lora_r=4,
        lora_alpha=8,
        passage_max_length=48,
        whitening_dims=0,
        disable_tqdm=True,
    )
    result = adapt(docs, tmp_path / "adapter", args)
    info = read_adapter_info(result.adapter)
    assert info is not None
    pairs = info.training["stages"]["contrastive"]["pairs"]
    assert pairs["maker"] == "generated" and pairs["negatives"] == 1
    assert sum(pairs["makers"].values()) == pairs["pairs"] == 4, "4 passages drawn: 1 step of 4 pairs"
    assert pairs["generation"]["passages"] == 4 and pairs["generation"]["written"] == 8
    assert len((tmp_path / "checkpoints" / CACHE_FILE).read_text().splitlines()) == 4
    assert info.training["stages"]["contrastive"]["inputs"]["negatives"] == 1
