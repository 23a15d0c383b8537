"""The lexical index's term statistics, which grounded answers weigh a question's words by."""

from __future__ import annotations

import math

from llara_rag.indexing.lexical import LexicalIndex


def test_idf_counts_the_chunks_holding_a_stemmed_term_and_weighs_an_unseen_term_most() -> None:
    index = LexicalIndex.build(["a", "b", "c"], ["cats purr", "cats bark loudly", "dogs bark"], "r")
    assert index.idf("cat") == index.idf("bark") == math.log(1 + 4 / 3)
    assert index.idf("purr") == math.log(1 + 4 / 2)
    assert index.idf("zebra") == index.idf("") == math.log(1 + 4 / 1)
    assert LexicalIndex.build([], [], "r").idf("cat") == math.log(2)
