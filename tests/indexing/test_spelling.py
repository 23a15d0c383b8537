"""Query spelling correction against a collection's words: misspelt words mended, correct ones left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from llara_rag.indexing.spelling import Speller

TEXTS = [
    "Boundary layer transition on a swept wing at supersonic speed.",
    "The boundary layer thickens downstream; transition moves forward with heating.",
    "Heat transfer in laminar flow past a cone. The flow separates behind the cone.",
    "Flutter of panels in supersonic flow, measured in the tunnel with the wing.",
    "What is known of the wish to measure it?",
]


@pytest.fixture(scope="module")
def speller() -> Speller:
    return Speller.from_texts(TEXTS)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("boundray layer", "boundary layer"),  # two letters swapped
        ("supersnic flow", "supersonic flow"),  # a letter dropped
        ("Flutterr of panels", "Flutter of panels"),  # a letter added, capital kept
        ("TRANSITON ON A SWEPT WING", "TRANSITION ON A SWEPT WING"),  # a query typed in capitals
        ("hwat causes transition?", "what causes transition?"),  # a swap may give a stop word ...
    ],
)
def test_a_misspelt_word_becomes_the_collections_word_one_edit_away(
    speller: Speller, typed: str, meant: str
) -> None:
    assert speller.correct(typed) == meant


@pytest.mark.parametrize(
    "question",
    [
        "does heating move transition?",  # every word in the collection
        "is the tunnel noisy",  # 'noisy': English, though the collection does not have it
        "NACA data on the flwo",  # the acronym stays, the typo is mended
        "dLNs and ComYMV in 2024",  # mixed case and numbers
        "the cne",  # three letters: too many neighbours to guess
    ],
)
def test_correctly_typed_words_acronyms_names_and_short_words_are_kept(speller: Speller, question: str) -> None:
    expected = question.replace("flwo", "flow")
    assert speller.correct(question) == expected


def test_a_content_word_is_not_turned_into_a_stop_word_but_by_a_swap(speller: Speller) -> None:
    """'wiht' is 'with' swapped; 'wih' dropped a letter and is left (3 letters); 'thw' likewise."""
    assert speller.correct("wiht heat") == "with heat"
    assert Speller({"with": 50, "width": 2}).correct("widh") == "width"


def test_correction_is_idempotent_and_survives_save_and_load(speller: Speller, tmp_path: Path) -> None:
    once = speller.correct("boundray layer supersnic")
    assert speller.correct(once) == once
    speller.save(tmp_path / "words.json")
    assert Speller.load(tmp_path / "words.json").correct("boundray layer supersnic") == once
