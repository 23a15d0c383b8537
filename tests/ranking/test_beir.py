"""Reading BEIR folders: the shared adi collection, and every kind of bad input a user can hand in."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llara_rag.errors import DatasetError
from llara_rag.ranking.beir import load_collection


def write_collection(
    root: Path, docs: list[dict], queries: list[dict], qrels: str, split: str = "test"
) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, encoding="utf-8")
    return root


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    docs = [
        {"_id": "d1", "title": "Wings", "text": "lift and air pressure"},
        {"_id": "d2", "title": "", "text": "cats purr"},
        {"_id": "d3", "title": "", "text": "   "},
        {"_id": "d1", "title": "dup", "text": "again"},
    ]
    queries = [
        {"_id": "q1", "text": "how do wings lift"},
        {"_id": "q2", "text": ""},
        {"_id": "q3", "text": "cats"},
    ]
    qrels = "q1\td1\t2\nq1\td3\t1\nq1\tghost\t1\nq2\td2\t1\nq9\td1\t1\nq3\td2\t0\n"
    return write_collection(tmp_path / "messy", docs, queries, qrels)


def test_adi_loads_with_title_and_text(data_dir: Path) -> None:
    collection = load_collection(data_dir / "adi")
    assert (collection.name, collection.split) == ("adi", "test")
    assert len(collection.doc_ids) == 82
    assert len(collection.queries) == len(collection.qrels) == 35
    first = json.loads((data_dir / "adi" / "corpus.jsonl").read_text().splitlines()[0])
    assert collection.doc_texts[0] == f"{first['title']} {first['text']}"


def test_messy_collection_skips_and_reports_instead_of_crashing(
    messy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        collection = load_collection(messy)
    assert collection.doc_ids == ("d1", "d2")
    assert collection.doc_texts[0] == "Wings lift and air pressure"
    assert collection.qrels == {"q1": {"d1": 2, "d3": 1}}
    skipped = collection.skipped
    assert skipped.empty_documents == ["d3"]
    assert skipped.duplicate_documents == ["d1"]
    assert skipped.unknown_documents == ["ghost"]
    assert skipped.unknown_queries == ["q9"]
    assert skipped.empty_queries == ["q2"]
    assert skipped.queries_without_relevant == ["q3"]
    assert "ghost" in caplog.text and "q9" in caplog.text and "empty documents" in caplog.text


def test_corpus_digest_follows_the_texts(messy: Path, tmp_path: Path) -> None:
    original = load_collection(messy)
    assert load_collection(messy).digest == original.digest
    corpus = messy / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("cats purr", "cats sleep"))
    assert load_collection(messy).digest != original.digest


def test_a_folder_that_is_not_beir_is_named_with_the_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"missing corpus.jsonl, queries.jsonl.*qrels/<split>.tsv"):
        load_collection(tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        load_collection(tmp_path / "notes.txt")


def test_a_missing_split_lists_the_splits_there_are(messy: Path) -> None:
    with pytest.raises(DatasetError, match=r"split 'dev'.*splits are: test"):
        load_collection(messy, split="dev")


def test_malformed_lines_name_file_and_line(messy: Path) -> None:
    with (messy / "queries.jsonl").open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(DatasetError, match=r"queries.jsonl:4 is not valid JSON"):
        load_collection(messy)


def test_qrels_matching_nothing_is_an_error(tmp_path: Path) -> None:
    root = write_collection(
        tmp_path / "c", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "y"}], "q7\td9\t1\n"
    )
    with pytest.raises(DatasetError, match="judges no query"):
        load_collection(root)
