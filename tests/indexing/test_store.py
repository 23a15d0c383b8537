"""The Chroma store: embedded and on a real server, reopened in a new process, pinned to one encoder."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llara_rag.errors import (
    CollectionNotFoundError,
    DamagedStoreError,
    ModelMismatchError,
    StoreConnectionError,
)
from llara_rag.indexing.ingest import IngestConfig, index_folder
from llara_rag.indexing.store import ModelIdentity, StoreConfig, open_index, open_store, parse_where
from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search
from llara_rag.testing import write_corpus


@pytest.fixture(scope="module")
def embed_model(tiny_backbone_dir: Path):
    from llama_index.core import Settings
    from llama_index.core.llms import MockLLM

    from llara_rag.encoding.embedding import LLaRAEmbedding

    model = LLaRAEmbedding(model_name=str(tiny_backbone_dir))
    Settings.llm = MockLLM()
    Settings.embed_model = model
    return model


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, embed_model) -> StoreConfig:
    """An embedded collection built once from a small corpus."""
    root = tmp_path_factory.mktemp("embedded")
    config = StoreConfig(path=root / "db", collection="notes")
    summary = index_folder(
        write_corpus(root / "docs"), config, embed_model, IngestConfig(chunk_size=64, chunk_overlap=8)
    )
    assert len(summary.added) == 6 and summary.chunks_written > 6
    return config


def other_identity(dimension: int = 32) -> ModelIdentity:
    return ModelIdentity(
        fingerprint="0123456789abcdef", dimension=dimension, model="other-model", adapter="my-adapter"
    )


def test_reopened_in_a_new_process_the_index_answers_the_same(embedded: StoreConfig, embed_model) -> None:
    hits = search(open_retriever(embedded, embed_model, RetrievalConfig(top_k=4)), "cats and dogs")
    assert len(hits) == 4
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert all(hit.file_name and hit.text and hit.found_by for hit in hits)
    command = [
        sys.executable, "-m", "llara_rag.cli", "query", "cats and dogs", "-k", "4", "--json",
        "--db", str(embedded.path), "--collection", embedded.collection, "--model", embed_model.model_name,
    ]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reopened = [json.loads(line) for line in result.stdout.splitlines()]
    assert [hit["node_id"] for hit in reopened] == [hit.node_id for hit in hits]
    assert [hit["score"] for hit in reopened] == pytest.approx([hit.score for hit in hits], abs=1e-5)


def test_dense_scores_are_cosine_similarities(embedded: StoreConfig, embed_model) -> None:
    store = open_store(embedded, embed_model, create=False)
    dense = open_retriever(embedded, embed_model, RetrievalConfig(mode="dense", top_k=1))
    hit = search(dense, "how does the engine index a chunk")[0]
    stored = store.collection.get(ids=[hit.node_id], include=["embeddings"])["embeddings"][0]
    query = embed_model.get_query_embedding("how does the engine index a chunk")
    assert hit.score == pytest.approx(float(sum(a * b for a, b in zip(stored, query))), abs=1e-5)


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_metadata_filters_restrict_results(embedded: StoreConfig, embed_model, mode: str) -> None:
    def retriever(k: int, where: dict[str, str | int | float]):
        return open_retriever(embedded, embed_model, RetrievalConfig(mode=mode, top_k=k, where=where))

    hits = search(retriever(50, parse_where(["file_name=doc3.txt"])), "cats")
    assert hits and {hit.file_name for hit in hits} == {"doc3.txt"}
    assert search(retriever(5, {"file_name": "absent.txt"}), "cats") == []


def test_where_items_parse_numbers_as_numbers() -> None:
    assert parse_where(["file_size=120", "file_name=a=b.txt"]) == {"file_size": 120, "file_name": "a=b.txt"}


def test_another_model_is_refused_naming_both_and_the_way_out(embedded: StoreConfig, embed_model) -> None:
    with pytest.raises(ModelMismatchError) as error:
        open_store(embedded, other_identity())
    message = str(error.value)
    assert "other-model + adapter my-adapter" in message and embed_model.model_name in message
    assert f"--model {embed_model.model_name}" in message and "--collection NEW" in message


def test_an_adapter_whose_weights_changed_asks_for_a_reindex(embedded: StoreConfig, embed_model) -> None:
    pinned = ModelIdentity.of(embed_model)
    with pytest.raises(ModelMismatchError) as error:
        open_store(embedded, pinned.model_copy(update={"fingerprint": "0" * 16}))
    message = str(error.value)
    assert "weights changed" in message and "--collection NEW" in message
    assert f"--model {embed_model.model_name}" not in message, "the same options would fail the same way"


def test_a_collection_indexed_at_int8_says_so_and_takes_any_precision(tmp_path: Path) -> None:
    """int8 vectors share fp32's fingerprint (measured interchangeable): the pin records the precision it was
    indexed at, and only a pin from when int8 made its own fingerprint is refused, as made another way."""
    config = StoreConfig(path=tmp_path / "db", collection="eight")
    int8 = ModelIdentity(
        fingerprint="8" * 16, dimension=8, model="smollm2", adapter="default", precision="int8"
    )
    store = open_store(config, int8)
    assert ModelIdentity.from_metadata(store.collection.metadata) == int8, (
        "the precision is read back from the pin"
    )
    before = {key: value for key, value in store.collection.metadata.items() if key != "llara:precision"}
    assert ModelIdentity.from_metadata(before) == int8.model_copy(update={"precision": None}), (
        "a pin written before the precision was recorded reads as no int8"
    )
    open_store(config, int8.model_copy(update={"precision": None}), create=False)
    with pytest.raises(ModelMismatchError) as error:
        open_store(config, int8.model_copy(update={"fingerprint": "e" * 16, "precision": None}), create=False)
    message = str(error.value)
    assert "smollm2 + the shipped default adapter at int8" in message
    assert "the way int8 vectors are made changed" in message and "--collection NEW" in message


def test_a_collection_without_adapter_is_reopened_with_adapter_none() -> None:
    identity = ModelIdentity(fingerprint="f" * 16, dimension=8, model="smollm2")
    assert identity.options == "--model smollm2 --adapter none"
    assert "without adapter" in identity.describe()


def test_a_collection_from_plain_chroma_is_checked_by_dimension(tmp_path: Path, embed_model) -> None:
    from llara_rag.indexing.store import connect

    config = StoreConfig(path=tmp_path / "db", collection="foreign")
    collection = connect(config).create_collection("foreign", embedding_function=None)
    collection.add(ids=["a"], embeddings=[[1.0, 0.0, 0.0]], documents=["a"])
    with pytest.raises(ModelMismatchError, match="3-d vectors"):
        open_store(config, embed_model)


def test_an_unknown_collection_is_not_created_by_readers(embedded: StoreConfig, embed_model) -> None:
    with pytest.raises(CollectionNotFoundError, match="notes"):
        open_index(embedded.model_copy(update={"collection": "nothing-here"}), embed_model)


def test_writes_larger_than_one_chroma_batch_are_split(tmp_path: Path) -> None:
    from llama_index.core.schema import TextNode

    identity = ModelIdentity(fingerprint="f" * 16, dimension=8, model="synthetic")
    store = open_store(StoreConfig(path=tmp_path / "db", collection="big"), identity)
    count = store.max_batch_size + 7
    rng = random.Random(0)
    nodes = [
        TextNode(id_=f"n{i}", text=f"chunk {i}", embedding=[rng.gauss(0, 1) for _ in range(8)])
        for i in range(count)
    ]
    assert len(store.add(nodes)) == count
    assert store.collection.count() == count


def test_a_real_chroma_server_indexes_and_answers(
    chroma_server_url: str, tmp_path: Path, embed_model, embedded: StoreConfig
) -> None:
    config = StoreConfig.from_url(
        chroma_server_url, collection="served-notes", docstore_dir=tmp_path / "record"
    )
    docs = write_corpus(tmp_path / "docs", n_files=4, seed=1)
    first = index_folder(docs, config, embed_model, IngestConfig(chunk_size=64, chunk_overlap=8))
    again = index_folder(docs, config, embed_model, IngestConfig(chunk_size=64, chunk_overlap=8))
    assert len(first.added) == 4 and len(again.unchanged) == 4 and again.chunks_written == 0
    store = open_store(config, embed_model, create=False)
    assert store.collection.count() == first.chunks_written
    hybrid = RetrievalConfig(mode="hybrid", top_k=3, where={"file_name": "doc2.txt"})
    hits = search(open_retriever(config, embed_model, hybrid), "python programming")
    assert hits and {hit.file_name for hit in hits} == {"doc2.txt"}
    assert {side for hit in hits for side in hit.found_by} == {"lexical", "dense"}
    with pytest.raises(ModelMismatchError):
        open_store(config, other_identity())


def test_a_server_that_is_down_is_a_clear_error(embed_model) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreConnectionError) as error:
        open_store(StoreConfig(host="127.0.0.1", port=port), embed_model)
    assert f"127.0.0.1:{port}" in str(error.value) and "chroma run" in str(error.value)


def test_server_records_live_outside_the_server_per_host() -> None:
    embedded = StoreConfig(path=Path("db"))
    served = StoreConfig.from_url("https://chroma.example.org", collection="team")
    assert embedded.docstore_folder() == Path("db") / "llara-docstore"
    assert served.port == 443 and served.ssl and served.docstore_folder().name == "chroma.example.org-443"


def test_a_reader_of_a_database_folder_that_does_not_exist_creates_nothing(
    tmp_path: Path, embed_model
) -> None:
    missing = StoreConfig(path=tmp_path / "nowhere")
    with pytest.raises(CollectionNotFoundError, match="No database folder .*nowhere.*llara-rag index"):
        open_retriever(missing, embed_model)
    assert not missing.path.exists()


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_a_damaged_database_file_is_named_with_the_way_out(
    embedded: StoreConfig, tmp_path: Path, embed_model, damage: str
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(embedded.path, copy)
    database = copy / "chroma.sqlite3"
    data = database.read_bytes()
    database.write_bytes(random.Random(0).randbytes(len(data)) if damage == "random" else data[:5000])
    with pytest.raises(DamagedStoreError) as damaged:
        open_store(embedded.model_copy(update={"path": copy}), embed_model, create=False)
    message = str(damaged.value)
    assert str(database) in message and "move it aside" in message and "\n" not in message


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: StoreConfig(collection="a"), "--collection 'a': must be 3 to 512 letters"),
        (lambda: StoreConfig.from_url("http://localhost:99999"), "Not a Chroma server URL"),
        (lambda: StoreConfig.from_url("http://localhost:port"), "Not a Chroma server URL"),
    ],
)
def test_invalid_store_settings_are_refused_in_one_line(build, message: str) -> None:
    from llara_rag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=message) as refused:
        build()
    assert "\n" not in str(refused.value)
