"""The retriever users query with: eval's fusion, the lexical index kept in step, and the CLI's modes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llara_rag.cli import main
from llara_rag.errors import LexicalIndexError
from llara_rag.indexing.ingest import IngestConfig, index_folder
from llara_rag.indexing.lexical import (
    WORDS_FILE,
    LexicalIndex,
    lexical_folder,
    open_lexical_index,
    start_revision,
)
from llara_rag.indexing.store import StoreConfig, open_store
from llara_rag.ranking.beir import Collection
from llara_rag.ranking.cache import VectorCache
from llara_rag.ranking.systems import BM25System, DenseSystem, HybridSystem
from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search
from llara_rag.testing import write_corpus

SMALL = IngestConfig(chunk_size=64, chunk_overlap=8, documents_per_batch=2)
QUESTIONS = {"q1": "cats purr when happy", "q2": "python systems programming", "q3": "wing lift air pressure"}


@pytest.fixture(scope="module")
def embed_model(tiny_backbone_dir: Path):
    from llara_rag.encoding.embedding import LLaRAEmbedding

    return LLaRAEmbedding(model_name=str(tiny_backbone_dir))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, embed_model) -> StoreConfig:
    root = tmp_path_factory.mktemp("retrieval")
    config = StoreConfig(path=root / "db", collection="notes")
    index_folder(write_corpus(root / "docs", n_files=8), config, embed_model, SMALL)
    return config


def chunks(config: StoreConfig, embed_model) -> dict[str, tuple[str, list[float]]]:
    """Chunk id -> (text, vector) of everything in the collection."""
    records = open_store(config, embed_model, create=False).collection.get(
        include=["documents", "embeddings"]
    )
    return {
        chunk: (text, list(vector))
        for chunk, text, vector in zip(records["ids"], records["documents"], records["embeddings"])
    }


class StoredVectors:
    """The collection's own passage vectors and the embedding's query vectors, for eval's dense system."""

    fingerprint = "stored"

    def __init__(self, stored: dict[str, tuple[str, list[float]]], embed_model) -> None:
        self.by_text = {text: vector for text, vector in stored.values()}
        self.embed_model = embed_model

    def encode_passages(self, passages: list[str]) -> np.ndarray:
        return np.array([self.by_text[text] for text in passages], dtype=np.float32)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return np.array([self.embed_model.get_query_embedding(query) for query in queries], dtype=np.float32)


def test_each_mode_ranks_as_eval_ranks_the_same_chunks(
    indexed: StoreConfig, embed_model, tmp_path: Path
) -> None:
    stored = chunks(indexed, embed_model)
    collection = Collection(
        name="chunks",
        split="test",
        doc_ids=tuple(stored),
        doc_texts=tuple(text for text, _ in stored.values()),
        queries=QUESTIONS,
        qrels={},
    )
    bm25 = BM25System()
    dense = DenseSystem("llara", "LLaRA", lambda: StoredVectors(stored, embed_model), VectorCache(tmp_path))
    systems = {"lexical": bm25, "dense": dense, "hybrid": HybridSystem([bm25, dense])}
    for mode, system in systems.items():
        expected = system.retrieve(collection, 5)
        retriever = open_retriever(indexed, embed_model, RetrievalConfig(mode=mode, top_k=5))
        for query_id, question in QUESTIONS.items():
            hits = search(retriever, question)
            assert [hit.node_id for hit in hits] == list(expected[query_id]), (mode, question)
            assert [hit.score for hit in hits] == pytest.approx(list(expected[query_id].values()), abs=1e-5)
            sides = {"lexical", "dense"} if mode == "hybrid" else {mode}
            assert all(hit.found_by and set(hit.found_by) <= sides for hit in hits)


def test_alpha_weighs_the_dense_side(indexed: StoreConfig, embed_model) -> None:
    def ranking(**settings: object) -> list[str]:
        retriever = open_retriever(indexed, embed_model, RetrievalConfig(top_k=4, **settings))
        return [hit.node_id for hit in search(retriever, "cats purr when happy")]

    assert ranking(mode="hybrid", alpha=1.0) == ranking(mode="dense")
    assert ranking(mode="hybrid", alpha=0.0) == ranking(mode="lexical")


def test_changing_one_file_changes_only_its_chunks_in_both_indexes(tmp_path: Path, embed_model) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=5)
    config = StoreConfig(path=tmp_path / "db", collection="one-change")
    index_folder(docs, config, embed_model, SMALL)
    before = chunks(config, embed_model)
    changed = docs / "doc2.txt"
    changed.write_text("zebras graze quietly.")

    summary = index_folder(docs, config, embed_model, SMALL)
    assert summary.updated == [str(changed.resolve())] and summary.chunks_written == 1
    after = chunks(config, embed_model)
    prefix = f"{changed.resolve()}#"
    assert {c: v for c, v in before.items() if not c.startswith(prefix)} == {
        c: v for c, v in after.items() if not c.startswith(prefix)
    }
    assert [text for chunk, (text, _) in after.items() if chunk.startswith(prefix)] == [
        "zebras graze quietly."
    ]

    collection = open_store(config, embed_model, create=False).collection
    lexical = open_lexical_index(config, collection)
    assert sorted(lexical.ids) == sorted(after)
    assert list(lexical.search("zebra", 10)) == [f"{prefix}0"]
    assert lexical.search("zebras", 10, allowed=set(before) - {f"{prefix}0"}) == {}


def test_an_old_collection_is_refused_by_modes_that_need_bm25_until_indexed_again(
    tmp_path: Path, embed_model, tiny_backbone_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = write_corpus(tmp_path / "docs", n_files=3)
    config = StoreConfig(path=tmp_path / "db", collection="old")
    index_folder(docs, config, embed_model, SMALL)
    collection = open_store(config, embed_model, create=False).collection
    shutil.rmtree(lexical_folder(config, collection))  # as a collection indexed before lexical indexes
    capsys.readouterr()
    query = [
        "query",
        "cats",
        "--db",
        str(config.path),
        "--collection",
        "old",
        "--model",
        str(tiny_backbone_dir),
    ]

    for mode in ("hybrid", "lexical"):
        assert main([*query, "--mode", mode]) == 2
        error = capsys.readouterr().err
        assert len(error.strip().splitlines()) == 1
        assert "no lexical (BM25) index" in error and "`llara-rag index`" in error and "--mode dense" in error
    assert main([*query, "--mode", "dense"]) == 0
    assert "found by dense #1" in capsys.readouterr().out

    again = index_folder(docs, config, embed_model, SMALL)
    assert again.chunks_written == 0 and len(again.unchanged) == 3
    capsys.readouterr()
    assert main([*query, "--mode", "hybrid"]) == 0

    start_revision(collection)  # as a run killed after its first write
    assert main([*query, "--mode", "hybrid"]) == 2
    assert "does not match the collection" in capsys.readouterr().err
    with pytest.raises(LexicalIndexError):
        open_retriever(config, embed_model, RetrievalConfig(mode="lexical"))


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_query_command_retrieves_in_each_mode_and_says_which_side_found_each_chunk(
    indexed: StoreConfig,
    embed_model,
    tiny_backbone_dir: Path,
    mode: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = [
        "--db",
        str(indexed.path),
        "--collection",
        indexed.collection,
        "--model",
        str(tiny_backbone_dir),
    ]
    question = "python systems programming"
    assert main(["query", question, "-k", "3", "--mode", mode, "--json", *options]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = search(open_retriever(indexed, embed_model, RetrievalConfig(mode=mode, top_k=3)), question)
    assert [hit["node_id"] for hit in printed] == [hit.node_id for hit in expected] and len(printed) == 3
    sides = {side for hit in printed for side in hit["found_by"]}
    assert sides == ({"lexical", "dense"} if mode == "hybrid" else {mode})

    assert main(["query", question, "-k", "1", "--mode", mode, *options]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    position = int(expected[0].node_id.rpartition("#")[2])
    assert first == (
        f"[1] {expected[0].file_name}, chunk {position + 1} (score {expected[0].score:.2f})  "
        f"found by {expected[0].describe_sides()}"
    ), "numbered from 1, sources and chunks alike, as chat numbers them"


def test_query_command_refuses_an_alpha_outside_0_to_1(
    indexed: StoreConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "cats", "--alpha", "1.5", "--db", str(indexed.path)]) == 2
    assert "--alpha 1.5: must be less than or equal to 1; pass e.g. --alpha 0.5." in capsys.readouterr().err


@pytest.mark.parametrize("question", ["", "  \n"])
def test_an_empty_question_is_refused_by_the_library_as_by_the_cli(
    indexed: StoreConfig, embed_model, question: str
) -> None:
    from llara_rag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="is empty; ask in words"):
        search(open_retriever(indexed, embed_model, RetrievalConfig(mode="lexical")), question)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_k": 0}, "-k 0: must be greater than 0; pass e.g. -k 5."),
        ({"top_k": -1}, "-k -1: must be greater than 0"),
        ({"alpha": 1.5}, "--alpha 1.5: must be less than or equal to 1"),
        ({"mode": "sparse"}, "--mode 'sparse': must be 'lexical', 'dense' or 'hybrid'"),
    ],
)
def test_invalid_retrieval_settings_are_refused_in_one_line_naming_the_flag(
    values: dict, message: str
) -> None:
    from llara_rag.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as refused:
        RetrievalConfig(**values)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_no_results_say_why(indexed: StoreConfig, embed_model, tmp_path: Path) -> None:
    from llara_rag.retrieval.retriever import why_no_results

    filtered = open_retriever(indexed, embed_model, RetrievalConfig(mode="dense", where={"nosuch": 1}))
    assert search(filtered, "cats") == []
    assert why_no_results(filtered).startswith(
        "no chunk matches --where nosuch=1; chunks have the keys file_name"
    )
    lexical = open_retriever(indexed, embed_model, RetrievalConfig(mode="lexical"))
    assert search(lexical, "zebra") == []
    assert "shares a word" in why_no_results(lexical)

    docs = write_corpus(tmp_path / "docs", n_files=1)
    emptied = StoreConfig(path=tmp_path / "db", collection="emptied")
    index_folder(docs, emptied, embed_model, SMALL)
    (docs / "doc0.txt").unlink()
    index_folder(docs, emptied, embed_model, SMALL.model_copy(update={"delete_missing": True}))
    empty = open_retriever(emptied, embed_model, RetrievalConfig(mode="hybrid"))
    assert search(empty, "cats") == [] and "holds no chunks" in why_no_results(empty)


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_a_misspelt_question_is_searched_as_the_collections_words(
    indexed: StoreConfig, embed_model, mode: str
) -> None:
    """Every side searches the corrected question; ``spelling=False`` searches it as typed."""
    typed, meant = "prur wehn hapy", "purr when happy"
    retriever = open_retriever(indexed, embed_model, RetrievalConfig(mode=mode, top_k=3))
    assert retriever.corrected(typed) == meant
    assert [hit.node_id for hit in search(retriever, typed)] == [
        hit.node_id for hit in search(retriever, meant)
    ]
    as_typed = open_retriever(indexed, embed_model, RetrievalConfig(mode=mode, top_k=3, spelling=False))
    assert as_typed.corrected(typed) == typed
    if mode == "lexical":
        assert search(as_typed, typed) == [], "no word of the question as typed is in the collection"


def test_a_lexical_index_without_the_collections_words_searches_as_typed_until_indexed_again(
    tmp_path: Path, embed_model
) -> None:
    """As a collection indexed before spelling correction: no correction, and the next ``index`` run adds it
    although no document changed."""
    docs = write_corpus(tmp_path / "docs", n_files=3)
    config = StoreConfig(path=tmp_path / "db", collection="old")
    index_folder(docs, config, embed_model, SMALL)
    collection = open_store(config, embed_model, create=False).collection
    folder = lexical_folder(config, collection)
    stamp = LexicalIndex.read_stamp(folder)
    (folder / stamp.build / WORDS_FILE).unlink()
    retrieval = RetrievalConfig(mode="lexical")
    assert open_retriever(config, embed_model, retrieval).corrected("prur") == "prur"

    again = index_folder(docs, config, embed_model, SMALL)
    assert again.chunks_written == 0
    assert open_retriever(config, embed_model, retrieval).corrected("prur") == "purr"
