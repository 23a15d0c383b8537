"""Documents become consecutive (window, next window) records, deduplicated, with skips reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llara_rag.errors import InvalidInputError
from llara_rag.training.data.corpus import build_records


@pytest.fixture(scope="module")
def tokenizer(tiny_backbone_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_backbone_dir)


def _write_docs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "b.txt").write_text("cats purr when happy . dogs bark when happy . the end", encoding="utf-8")
    (folder / "a.md").write_text("rust is a systems programming language", encoding="utf-8")
    (folder / "copy.txt").write_text("rust is a systems search engine index", encoding="utf-8")
    (folder / "same.txt").write_text(
        "cats purr when happy . dogs bark when happy . the end", encoding="utf-8"
    )
    (folder / "page.html").write_text(
        "<html><body><p>wing lift air pressure</p></body></html>", encoding="utf-8"
    )
    (folder / "empty.txt").write_text("  \n", encoding="utf-8")
    (folder / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")
    (folder / "broken.docx").write_bytes(b"not a zip archive")
    return folder


def test_folder_windows_pairs_order_dedup_and_skips(tmp_path, tokenizer):
    records, summary = build_records(_write_docs(tmp_path / "docs"), tokenizer, window_tokens=4)
    assert [r.doc_id for r in records][:1] == ["a.md"]  # sorted file order
    by_doc = [r for r in records if r.doc_id == "b.txt"]
    assert [r.text for r in by_doc] == ["cats purr when happy", ". dogs bark when", "happy . the end"]
    assert [r.next_text for r in by_doc] == [by_doc[1].text, by_doc[2].text, None]
    assert summary.duplicate_documents == 1  # same.txt
    assert summary.duplicate_windows == 1  # copy.txt starts with a window of a.md
    assert [r.text for r in records if r.doc_id == "copy.txt"] == ["search engine index"]
    assert not any(r.doc_id in {"same.txt", "empty.txt", "blob.txt"} for r in records)
    assert any("wing lift" in r.text and "<p>" not in r.text for r in records)
    # the reasons `llara-rag index` gives: one reader for both
    assert summary.skipped["no text in it (a whitespace-only file, an image or a scanned PDF)"] == 1
    assert summary.skipped["binary file with no reader for '.txt'"] == 1
    skipped = {skip.name: skip.reason for skip in summary.skips}
    assert skipped["image.png"].startswith("the .png reader failed")
    assert "broken.docx" in skipped
    again, _ = build_records(tmp_path / "docs", tokenizer, window_tokens=4)
    assert again == records


def test_jsonl_and_beir_sources(tmp_path, tokenizer):
    rows = [
        {"_id": "1", "title": "cats", "text": "cats purr when happy"},
        {"_id": "2", "title": "dogs bark", "text": ""},
        "not an object",
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n", encoding="utf-8")
    for source in (path, tmp_path):
        records, summary = build_records(source, tokenizer, window_tokens=8)
        assert [(r.doc_id, r.text) for r in records] == [("1", "cats\npurr when happy"), ("2", "dogs bark")]
        assert sum(summary.skipped.values()) == 2


def test_bad_sources_raise_clear_errors(tmp_path, tokenizer):
    with pytest.raises(InvalidInputError, match="does not exist"):
        build_records(tmp_path / "missing", tokenizer)
    (tmp_path / "notes.txt").write_text("cats", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="single .txt file"):
        build_records(tmp_path / "notes.txt", tokenizer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="No text to learn from"):
        build_records(tmp_path / "empty", tokenizer)
