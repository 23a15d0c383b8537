"""Ingestion: upserts, deletions, bad files, crashes and kills midway, chunk settings, on the tiny random
backbone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llara_rag.errors import DamagedStoreError, InvalidInputError, LexicalIndexError
from llara_rag.indexing.ingest import VERSION_KEY, IngestConfig, docstore_path, index_folder
from llara_rag.indexing.lexical import lexical_folder, open_lexical_index
from llara_rag.indexing.store import PinnedChromaVectorStore, StoreConfig, open_store
from llara_rag.testing import WORDS, write_corpus

SMALL = IngestConfig(chunk_size=64, chunk_overlap=8, documents_per_batch=2)


@pytest.fixture(scope="module")
def embed_model(tiny_backbone_dir: Path):
    from llara_rag.encoding.embedding import LLaRAEmbedding

    return LLaRAEmbedding(model_name=str(tiny_backbone_dir))


def stored(config: StoreConfig, embed_model) -> dict[str, tuple[str, str]]:
    """Chunk id -> (document id, text) of everything in the collection."""
    records = open_store(config, embed_model, create=False).collection.get(include=["metadatas", "documents"])
    return {
        chunk: (metadata["document_id"], text)
        for chunk, metadata, text in zip(records["ids"], records["metadatas"], records["documents"])
    }


def lexical(config: StoreConfig, embed_model) -> dict[str, dict[str, dict[str, float]]]:
    """What the collection's lexical index answers: word -> chunk id -> BM25, over the test vocabulary."""
    index = open_lexical_index(config, open_store(config, embed_model, create=False).collection)
    assert sorted(index.ids) == sorted(stored(config, embed_model))  # the same chunks as Chroma
    return {word: index.search(word, 1000) for word in WORDS}


def recorded_encodes(embed_model, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the encoder is given from now on, as the encoder sees them (metadata lines included)."""
    encoded: list[str] = []
    original = embed_model.encoder.encode

    def recording_encode(texts, *args, **kwargs):
        encoded.extend(texts)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(embed_model.encoder, "encode", recording_encode)
    return encoded


def test_rerun_upserts_changed_skips_unchanged_and_removes_deleted_on_request(
    tmp_path: Path, embed_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=5)
    config = StoreConfig(path=tmp_path / "db", collection="upserts")
    first = index_folder(docs, config, embed_model, SMALL)
    assert len(first.added) == 5 and len(stored(config, embed_model)) == first.chunks_written

    encoded = recorded_encodes(embed_model, monkeypatch)
    unchanged = index_folder(docs, config, embed_model, SMALL)
    assert len(unchanged.unchanged) == 5 and unchanged.chunks_written == 0 and encoded == []

    changed, deleted = docs / "doc1.txt", docs / "doc4.txt"
    changed.write_text("rust is a systems programming language.")
    deleted.unlink()
    kept = index_folder(docs, config, embed_model, SMALL)
    assert kept.updated == [str(changed.resolve())] and kept.missing == [str(deleted.resolve())]
    chunks = stored(config, embed_model)
    assert [text for document, text in chunks.values() if document == str(changed.resolve())] == [
        "rust is a systems programming language."
    ]
    assert any(document == str(deleted.resolve()) for document, _ in chunks.values())

    pruned = index_folder(docs, config, embed_model, SMALL.model_copy(update={"delete_missing": True}))
    assert pruned.removed == [str(deleted.resolve())] and len(pruned.unchanged) == 4
    assert all(document != str(deleted.resolve()) for document, _ in stored(config, embed_model).values())
    again = index_folder(docs, config, embed_model, SMALL.model_copy(update={"delete_missing": True}))
    assert again.removed == [] and again.missing == []


def test_bad_files_are_skipped_with_reasons_and_nothing_else_is_lost(tmp_path: Path, embed_model) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=3)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "blank.md").write_text("  \n\t\n")
    (docs / "image.bin").write_bytes(bytes(range(256)) * 8)
    (docs / "latin1.txt").write_bytes("na\xefve caf\xe9".encode("latin-1"))
    (docs / "huge.txt").write_text("cats purr. " * 2000)
    (docs / "one-long-line.txt").write_text("dogs bark " * 400)
    (docs / ".hidden.txt").write_text("the hidden file")
    config = StoreConfig(path=tmp_path / "db", collection="bad-input")
    summary = index_folder(docs, config, embed_model, SMALL.model_copy(update={"max_file_bytes": 10_000}))
    reasons = {Path(skip.name).name: skip.reason for skip in summary.skipped}
    assert set(reasons) == {"empty.txt", "blank.md", "image.bin", "latin1.txt", "huge.txt"}
    assert "empty" in reasons["empty.txt"] and "no text" in reasons["blank.md"]
    assert "binary" in reasons["image.bin"] and "UTF-8" in reasons["latin1.txt"]
    assert "--max-file-mb" in reasons["huge.txt"]
    assert sorted(Path(document).name for document in summary.added) == [
        "doc0.txt", "doc1.txt", "doc2.txt", "one-long-line.txt"
    ]  # fmt: skip
    long_line = [t for d, t in stored(config, embed_model).values() if d.endswith("one-long-line.txt")]
    assert len(long_line) > 1 and "".join(long_line).count("dogs") >= 400
    assert "skipped" in summary.report() and "latin1.txt" in summary.report()


def test_chunk_size_beyond_the_encoder_limit_is_refused(tmp_path: Path, embed_model) -> None:
    from llara_rag.errors import InvalidInputError

    docs = write_corpus(tmp_path / "docs", n_files=1)
    with pytest.raises(InvalidInputError, match="passage_max_length"):
        index_folder(docs, StoreConfig(path=tmp_path / "db"), embed_model, IngestConfig(chunk_size=100_000))


def test_a_crash_between_writing_vectors_and_recording_them_is_finished_by_a_rerun(
    tmp_path: Path, embed_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llara_rag.indexing import ingest

    docs = write_corpus(tmp_path / "docs", n_files=7)
    reference = StoreConfig(path=tmp_path / "db", collection="reference")
    index_folder(docs, reference, embed_model, SMALL)
    crashed = StoreConfig(path=tmp_path / "db", collection="crashed")
    saves: list[Path] = []
    real_save = ingest.save_docstore

    def save_then_die(docstore, path: Path) -> None:
        if saves:
            raise KeyboardInterrupt  # the second batch's vectors are written, its record never is
        saves.append(path)
        real_save(docstore, path)

    monkeypatch.setattr(ingest, "save_docstore", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        index_folder(docs, crashed, embed_model, SMALL)
    monkeypatch.setattr(ingest, "save_docstore", real_save)
    partial = stored(crashed, embed_model)
    assert 0 < len(partial) < len(stored(reference, embed_model))

    with pytest.raises(LexicalIndexError, match="no lexical"):
        lexical(crashed, embed_model)

    finished = index_folder(docs, crashed, embed_model, SMALL)
    assert len(finished.unchanged) == 2 and len(finished.added) == 5
    assert stored(crashed, embed_model) == stored(reference, embed_model)
    assert lexical(crashed, embed_model) == lexical(reference, embed_model)


def test_a_crash_while_saving_the_lexical_index_is_finished_by_a_rerun(
    tmp_path: Path, embed_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llara_rag.indexing import lexical as lexical_module

    docs = write_corpus(tmp_path / "docs", n_files=4)
    config = StoreConfig(path=tmp_path / "db", collection="lexical-crash")
    index_folder(docs, config, embed_model, SMALL)
    before = lexical(config, embed_model)
    (docs / "doc1.txt").write_text("zebras graze quietly.")
    real_replace = os.replace

    def die_before_switching(source, target) -> None:
        if Path(target).name == lexical_module.STAMP_FILE:
            raise KeyboardInterrupt  # the new build is on disk, the stamp still names the old one
        real_replace(source, target)

    monkeypatch.setattr(lexical_module.os, "replace", die_before_switching)
    with pytest.raises(KeyboardInterrupt):
        index_folder(docs, config, embed_model, SMALL)
    monkeypatch.setattr(lexical_module.os, "replace", real_replace)
    with pytest.raises(LexicalIndexError, match="does not match"):
        lexical(config, embed_model)

    assert index_folder(docs, config, embed_model, SMALL).chunks_written == 0
    assert lexical(config, embed_model) != before
    store = open_store(config, embed_model, create=False)
    folder = lexical_folder(config, store.collection)
    assert len([entry for entry in folder.iterdir() if entry.is_dir()]) == 1  # the unfinished build is gone
    assert list(open_lexical_index(config, store.collection).search("zebra", 10)) == [
        f"{(docs / 'doc1.txt').resolve()}#0"
    ]


def test_a_killed_index_command_is_finished_by_a_rerun(tmp_path: Path, embed_model) -> None:
    """SIGKILL at a random point of a real run, then the same command again: the reference collection."""
    docs = write_corpus(tmp_path / "docs", n_files=40, seed=3)
    reference = StoreConfig(path=tmp_path / "reference", collection="docs")
    index_folder(docs, reference, embed_model, SMALL.model_copy(update={"documents_per_batch": 1}))
    killed = StoreConfig(path=tmp_path / "killed", collection="docs")
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from llara_rag.encoding.embedding import LLaRAEmbedding
        from llara_rag.indexing.ingest import IngestConfig, index_folder
        from llara_rag.indexing.store import StoreConfig
        config = IngestConfig(chunk_size=64, chunk_overlap=8, documents_per_batch=1)
        index_folder(Path({str(docs)!r}), StoreConfig(path=Path({str(killed.path)!r}), collection="docs"),
                     LLaRAEmbedding(model_name={embed_model.model_name!r}), config)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    record_folder = killed.docstore_folder()
    deadline = time.monotonic() + 120
    while not (record_folder.is_dir() and any(record_folder.glob("*.json"))):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    store = open_store(killed, embed_model, create=False)
    assert store.collection.count() < open_store(reference, embed_model, create=False).collection.count()
    with pytest.raises(LexicalIndexError):  # never a partial lexical index answering as if whole
        lexical(killed, embed_model)
    finished = index_folder(docs, killed, embed_model, SMALL)
    assert finished.added and docstore_path(killed, store).exists()
    assert stored(killed, embed_model) == stored(reference, embed_model)
    assert lexical(killed, embed_model) == lexical(reference, embed_model)


def versions(config: StoreConfig, embed_model) -> dict[str, set[str]]:
    """Document id -> the versions its chunks carry (one, unless a write was cut short)."""
    records = open_store(config, embed_model, create=False).collection.get(include=["metadatas"])
    found: dict[str, set[str]] = {}
    for metadata in records["metadatas"]:
        found.setdefault(metadata["document_id"], set()).add(metadata[VERSION_KEY])
    return found


def test_a_huge_file_is_written_in_batches_and_a_crash_keeps_them(
    tmp_path: Path, embed_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llara_rag.indexing import ingest

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "huge.txt").write_text("dogs bark when happy. " * 600)
    config = SMALL.model_copy(update={"chunks_per_batch": 8})
    reference = StoreConfig(path=tmp_path / "db", collection="reference")
    total = index_folder(docs, reference, embed_model, config).chunks_written
    assert total > 3 * 8

    crashed = StoreConfig(path=tmp_path / "db", collection="crashed")
    writes: list[int] = []
    real_upsert = PinnedChromaVectorStore.upsert

    def upsert_then_die(self, nodes) -> None:
        if len(writes) == 2:
            raise KeyboardInterrupt  # killed while embedding the third batch of the one file
        writes.append(len(nodes))
        real_upsert(self, nodes)

    monkeypatch.setattr(PinnedChromaVectorStore, "upsert", upsert_then_die)
    with pytest.raises(KeyboardInterrupt):
        index_folder(docs, crashed, embed_model, config)
    monkeypatch.setattr(PinnedChromaVectorStore, "upsert", real_upsert)
    assert len(stored(crashed, embed_model)) == 16, "the batches written before the kill are kept"

    planned: list[tuple[int, int]] = []
    real_planned = ingest.Progress.planned

    def record_plan(self, total: int, done: int) -> None:
        planned.append((total, done))
        real_planned(self, total, done)

    monkeypatch.setattr(ingest.Progress, "planned", record_plan)
    resumed = index_folder(docs, crashed, embed_model, config)
    assert resumed.added == [str((docs / "huge.txt").resolve())]
    assert resumed.chunks_written == total - 16 and planned == [(total, 16)], "progress counts chunks"
    assert stored(crashed, embed_model) == stored(reference, embed_model)
    assert lexical(crashed, embed_model) == lexical(reference, embed_model)


def test_a_document_being_updated_keeps_its_chunks_until_a_killed_run_is_finished(
    tmp_path: Path, embed_model
) -> None:
    """A real `index` run over changed files, SIGKILLed midway: a reader polling the collection from
    another process never finds a document without chunks, and the re-run gives the reference."""
    docs = write_corpus(tmp_path / "docs", n_files=16, seed=5)
    killed = StoreConfig(path=tmp_path / "killed", collection="docs")
    index_folder(docs, killed, embed_model, SMALL)
    everything = set(versions(killed, embed_model))
    write_corpus(docs, n_files=16, seed=6)  # every file changes; some get fewer chunks, some more
    reference = StoreConfig(path=tmp_path / "reference", collection="docs")
    index_folder(docs, reference, embed_model, SMALL)
    record = docstore_path(killed, open_store(killed, embed_model, create=False))
    recorded_at = record.stat().st_mtime_ns
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from llara_rag.encoding.embedding import LLaRAEmbedding
        from llara_rag.indexing.ingest import IngestConfig, index_folder
        from llara_rag.indexing.store import PinnedChromaVectorStore, StoreConfig
        upsert = PinnedChromaVectorStore.upsert
        def slow_upsert(self, nodes):  # as a real encoder's pace: the kill lands mid-update
            upsert(self, nodes)
            time.sleep(0.1)
        PinnedChromaVectorStore.upsert = slow_upsert
        config = IngestConfig(chunk_size=64, chunk_overlap=8, documents_per_batch=1, chunks_per_batch=2)
        index_folder(Path({str(docs)!r}), StoreConfig(path=Path({str(killed.path)!r}), collection="docs"),
                     LLaRAEmbedding(model_name={embed_model.model_name!r}), config)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    polls = 0
    deadline = time.monotonic() + 120
    while record.stat().st_mtime_ns == recorded_at or polls < 20:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        assert set(versions(killed, embed_model)) == everything
        polls += 1
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    midway = versions(killed, embed_model)
    assert set(midway) == everything
    assert any(len(found) > 1 or found != versions(reference, embed_model)[d] for d, found in midway.items())
    finished = index_folder(docs, killed, embed_model, SMALL)
    assert finished.updated and not finished.added
    assert stored(killed, embed_model) == stored(reference, embed_model)
    assert versions(killed, embed_model) == versions(reference, embed_model)
    assert lexical(killed, embed_model) == lexical(reference, embed_model)


def test_other_chunk_settings_are_refused_or_re_chunk_every_document(tmp_path: Path, embed_model) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=4)
    config = StoreConfig(path=tmp_path / "db", collection="chunking")
    index_folder(docs, config, embed_model, SMALL)
    smaller = SMALL.model_copy(update={"chunk_size": 32, "chunk_overlap": 4})
    with pytest.raises(InvalidInputError) as refused:
        index_folder(docs, config, embed_model, smaller)
    message = str(refused.value)
    assert "chunked with --chunk-size 64 --chunk-overlap 8" in message and "--rechunk" in message
    assert "\n" not in message

    rechunked = index_folder(docs, config, embed_model, smaller.model_copy(update={"rechunk": True}))
    assert len(rechunked.updated) == 4 and rechunked.unchanged == []
    reference = StoreConfig(path=tmp_path / "db", collection="reference")
    index_folder(docs, reference, embed_model, smaller)
    assert stored(config, embed_model) == stored(reference, embed_model), "no chunk of the old size is left"
    assert lexical(config, embed_model) == lexical(reference, embed_model)
    again = index_folder(docs, config, embed_model, smaller)
    assert len(again.unchanged) == 4 and again.chunks_written == 0, "the new settings are the collection's"


def test_no_file_name_embeds_the_text_alone_and_is_pinned_like_the_chunk_sizes(
    tmp_path: Path, embed_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=2)
    encoded = recorded_encodes(embed_model, monkeypatch)
    named = StoreConfig(path=tmp_path / "db", collection="named")
    index_folder(docs, named, embed_model, SMALL)
    assert encoded and all(text.startswith("file_name: doc") for text in encoded)

    encoded.clear()
    plain = SMALL.model_copy(update={"embed_file_name": False})
    with pytest.raises(
        InvalidInputError, match="chunked with --chunk-size 64 --chunk-overlap 8, not .* --no-file-name"
    ):
        index_folder(docs, named, embed_model, plain)
    assert encoded == []
    rechunked = index_folder(docs, named, embed_model, plain.model_copy(update={"rechunk": True}))
    assert len(rechunked.updated) == 2 and encoded and not any("file_name" in text for text in encoded)
    assert {text for _, text in stored(named, embed_model).values()} <= {text for text in encoded}
    again = index_folder(docs, named, embed_model, plain)
    assert len(again.unchanged) == 2 and again.chunks_written == 0


def test_a_folder_that_is_missing_or_empty_is_refused_without_creating_a_database(
    tmp_path: Path, embed_model
) -> None:
    config = StoreConfig(path=tmp_path / "db")
    with pytest.raises(InvalidInputError, match="is not a folder"):
        index_folder(tmp_path / "missing", config, embed_model)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.md").write_text("not indexed")
    with pytest.raises(InvalidInputError, match=r"No documents found in .*empty \(supported: .*\.pdf"):
        index_folder(tmp_path / "empty", config, embed_model)
    assert not config.path.exists()


def test_emptying_the_folder_with_delete_missing_removes_everything(tmp_path: Path, embed_model) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=2)
    config = StoreConfig(path=tmp_path / "db", collection="emptied")
    index_folder(docs, config, embed_model, SMALL)
    for path in docs.iterdir():
        path.unlink()
    summary = index_folder(docs, config, embed_model, SMALL.model_copy(update={"delete_missing": True}))
    assert len(summary.removed) == 2 and stored(config, embed_model) == {}


def test_an_unreadable_ingestion_record_is_named_with_the_way_out(tmp_path: Path, embed_model) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=2)
    config = StoreConfig(path=tmp_path / "db", collection="record")
    index_folder(docs, config, embed_model, SMALL)
    before = stored(config, embed_model)
    record = docstore_path(config, open_store(config, embed_model, create=False))
    record.write_text('{"docstore/metadata": {"')
    with pytest.raises(DamagedStoreError) as damaged:
        index_folder(docs, config, embed_model, SMALL)
    assert str(record) in str(damaged.value) and "delete it" in str(damaged.value)

    record.unlink()
    rebuilt = index_folder(docs, config, embed_model, SMALL)
    assert len(rebuilt.added) == 2 and rebuilt.chunks_written == 0, "the chunks in Chroma are kept"
    assert stored(config, embed_model) == before


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"chunk_size": 0}, "--chunk-size 0: must be greater than 0; pass e.g. --chunk-size 256."),
        ({"chunk_size": -5}, "--chunk-size -5: must be greater than 0"),
        ({"chunk_overlap": -1}, "--chunk-overlap -1: must be greater than or equal to 0"),
        ({"chunk_size": 64, "chunk_overlap": 64}, "--chunk-overlap 64 is not smaller than --chunk-size 64"),
        ({"max_file_bytes": 0}, "--max-file-mb 0: must be greater than 0; pass e.g. --max-file-mb 5."),
        ({"max_file_bytes": -2_500_000}, "--max-file-mb -2.5: must be greater than 0"),
    ],
)
def test_invalid_settings_are_refused_in_one_line_naming_the_flag(values: dict, message: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        IngestConfig(**values)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
