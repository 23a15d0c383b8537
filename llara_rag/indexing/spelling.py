"""Query spelling correction against the words of the collection searched.

A misspelt query word matches nothing for BM25 and reaches the encoder as other sub-word tokens. The
collection itself says which words exist: a query word of four or more letters that neither the collection
nor an English dictionary (the one symspellpy ships) contains, and that one edit (a letter dropped, added,
changed, or two swapped) turns into a word of the collection, is replaced by that word. Known English
words, numbers, acronyms and mixed-case names (``ComYMV``, ``dLNs``) are never changed, so queries typed
correctly keep their words. Among several one-edit words, a swap of two letters wins (the commonest slip of
the fingers), then the word the collection uses most; a stop word is taken only through a swap, since a
content word turned into "with" is lost to the search while a typo in a stop word costs it little.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from llara_rag.extras import STORE, require

if TYPE_CHECKING:
    from symspellpy import SymSpell

logger = logging.getLogger(__name__)

WORD = re.compile(r"[^\W\d_]+")
"""A run of letters: what is counted in documents and looked at in queries."""
MIN_LETTERS = 4
"""Shorter words have too many one-edit neighbours to correct safely."""
ENGLISH = "frequency_dictionary_en_82_765.txt"
"""symspellpy's English word list: words users type correctly that a collection may not contain."""


def count_words(texts: Iterable[str]) -> Counter[str]:
    """Lower-cased words and how often the texts use them."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(WORD.findall(text.lower()))
    return counts


@cache
def english_words() -> frozenset[str]:
    require("symspellpy", STORE)
    listing = importlib.resources.files("symspellpy") / ENGLISH
    return frozenset(line.split(" ", 1)[0] for line in listing.read_text(encoding="utf-8").splitlines())


@cache
def stop_words() -> frozenset[str]:
    """The English stop words BM25 leaves out (bm25s's list)."""
    return frozenset(require("bm25s.stopwords", STORE).STOPWORDS_EN)


def is_correctable(word: str, query_in_capitals: bool) -> bool:
    """Letters only, long enough, and cased like a word (lower, Capitalised, or capitals in a query typed all
    in capitals) rather than like an acronym or a name."""
    cased = word.islower() or word.istitle() or (query_in_capitals and word.isupper())
    return len(word) >= MIN_LETTERS and cased


def cased_like(word: str, model: str) -> str:
    return word.upper() if model.isupper() else word.capitalize() if model[0].isupper() else word


class Speller:
    """Corrects query words the collection (of ``counts``) does not contain; see the module's docstring."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = dict(counts)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Speller:
        return cls(count_words(texts))

    @cached_property
    def _index(self) -> SymSpell:
        """The one-edit neighbourhoods of the collection's words (built on first use: about a second for
        30,000 words)."""
        symspellpy = require("symspellpy", STORE)
        index = symspellpy.SymSpell(max_dictionary_edit_distance=1)
        for word, count in self.counts.items():
            if len(word) >= MIN_LETTERS - 1:
                index.create_dictionary_entry(word, count)
        return index

    def _suggest(self, word: str) -> str | None:
        from symspellpy import Verbosity

        suggestions = self._index.lookup(word, Verbosity.CLOSEST, max_edit_distance=1)
        swaps = [s.term for s in suggestions if s.distance == 1 and sorted(s.term) == sorted(word)]
        if swaps:
            return max(swaps, key=self.counts.__getitem__)
        content = [s.term for s in suggestions if s.distance == 1 and s.term not in stop_words()]
        return max(content, key=self.counts.__getitem__) if content else None

    def correct(self, query: str) -> str:
        """``query`` with each misspelt word replaced by the collection's word one edit away, if any."""
        capitals = query.isupper()
        known = english_words()
        pieces = WORD.split(query)
        words = WORD.findall(query)
        out = [pieces[0]]
        for word, after in zip(words, pieces[1:]):
            lower = word.lower()
            if is_correctable(word, capitals) and lower not in self.counts and lower not in known:
                suggestion = self._suggest(lower)
                word = cased_like(suggestion, word) if suggestion else word
            out += [word, after]
        corrected = "".join(out)
        if corrected != query:
            logger.info("Searching for %r (spelling corrected from %r)", corrected, query)
        return corrected

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.counts, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Speller:
        return cls(json.loads(path.read_text(encoding="utf-8")))
