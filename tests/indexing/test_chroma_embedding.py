"""The plain-Chroma embedding function: EBAE for documents, EBAR for query_texts, persisted config."""

from __future__ import annotations

from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from llara_rag.errors import InvalidInputError, ModelMismatchError
from llara_rag.indexing.chroma_embedding import LLaRAEmbeddingFunction
from llara_rag.testing import build_tiny_backbone, write_corpus, write_random_adapter

DOCUMENTS = [
    "cats purr when happy",
    "dogs bark at the engine",
    "the stock market fell on monday",
    "insulin and diabetes",
]
QUERY = "why does the cat purr"


def client(path: Path) -> chromadb.ClientAPI:
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


@pytest.fixture()
def function(tiny_backbone_dir: Path) -> LLaRAEmbeddingFunction:
    return LLaRAEmbeddingFunction(
        model_name=str(tiny_backbone_dir), query_max_length=16, passage_max_length=32
    )


def test_documents_are_stored_with_the_passage_prompt(
    function: LLaRAEmbeddingFunction, tmp_path: Path
) -> None:
    collection = client(tmp_path).create_collection("docs", embedding_function=function)
    collection.add(ids=[str(i) for i in range(len(DOCUMENTS))], documents=DOCUMENTS)
    stored = collection.get(ids=["0", "1", "2", "3"], include=["embeddings"])["embeddings"]
    np.testing.assert_allclose(stored, function.encoder.encode_passages(DOCUMENTS), atol=1e-6)


def test_query_texts_take_the_query_prompt(function: LLaRAEmbeddingFunction, tmp_path: Path) -> None:
    collection = client(tmp_path).create_collection("docs", embedding_function=function)
    collection.add(ids=[str(i) for i in range(len(DOCUMENTS))], documents=DOCUMENTS)

    def distances(**query: object) -> np.ndarray:
        result = collection.query(n_results=len(DOCUMENTS), include=["distances"], **query)
        order = np.argsort([int(i) for i in result["ids"][0]])
        return np.asarray(result["distances"][0])[order]

    through_chroma = distances(query_texts=[QUERY])
    ebar = distances(query_embeddings=function.encoder.encode_queries([QUERY]))
    ebae = distances(query_embeddings=function.encoder.encode_passages([QUERY]))
    np.testing.assert_allclose(through_chroma, ebar, atol=1e-5)
    assert not np.allclose(through_chroma, ebae, atol=1e-3)


def test_a_reopened_collection_rebuilds_the_function_from_its_config(
    function: LLaRAEmbeddingFunction, tmp_path: Path
) -> None:
    client(tmp_path).create_collection("docs", embedding_function=function).add(
        ids=["0"], documents=DOCUMENTS[:1]
    )

    reopened = client(tmp_path).get_collection("docs")
    rebuilt = reopened.configuration["embedding_function"]
    assert isinstance(rebuilt, LLaRAEmbeddingFunction)
    assert rebuilt.get_config() == function.get_config()
    assert rebuilt.encoder is function.encoder
    assert reopened.query(query_texts=[QUERY], n_results=1)["ids"] == [["0"]]


def test_the_collection_space_is_cosine(function: LLaRAEmbeddingFunction, tmp_path: Path) -> None:
    collection = client(tmp_path).create_collection("docs", embedding_function=function)
    assert collection.configuration["hnsw"]["space"] == "cosine"


def test_changing_the_model_of_a_collection_is_refused(
    function: LLaRAEmbeddingFunction, tmp_path: Path
) -> None:
    collection = client(tmp_path).create_collection("docs", embedding_function=function)
    other = LLaRAEmbeddingFunction(model_name=str(build_tiny_backbone(tmp_path / "other", seed=1)))
    with pytest.raises(ModelMismatchError, match="model_name"):
        collection.modify(configuration={"embedding_function": other})


def test_the_function_shares_the_llama_index_encoder(
    function: LLaRAEmbeddingFunction, tiny_backbone_dir: Path
) -> None:
    from llara_rag.encoding.embedding import LLaRAEmbedding

    embedding = LLaRAEmbedding(model_name=str(tiny_backbone_dir), query_max_length=16, passage_max_length=32)
    assert embedding.encoder is function.encoder
    assert function.fingerprint == embedding.fingerprint


def test_empty_documents_are_refused_by_name(function: LLaRAEmbeddingFunction) -> None:
    with pytest.raises(InvalidInputError, match="Text 1"):
        function(["fine", "  "])


def test_a_configuration_stored_on_a_gpu_machine_reopens_on_cpu(
    function: LLaRAEmbeddingFunction, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not {"device", "dtype", "batch_size"} & set(function.get_config())
    written_on_gpu = {
        "model_name": function.config.model,
        "adapter": None,
        "query_max_length": 16,
        "passage_max_length": 32,
        "prompts": function.config.prompts.model_dump(),
        "device": "cuda",
        "dtype": "bfloat16",
        "batch_size": 256,
    }
    with monkeypatch.context() as patch:
        patch.setattr(LLaRAEmbeddingFunction, "get_config", lambda self: written_on_gpu)
        client(tmp_path).create_collection("docs", embedding_function=function)

    reopened = client(tmp_path).get_collection("docs")
    rebuilt = reopened.configuration["embedding_function"]
    assert (rebuilt.config.device, rebuilt.config.dtype) == (None, None)
    reopened.add(ids=["0", "1"], documents=DOCUMENTS[:2])
    assert reopened.query(query_texts=[QUERY], n_results=1)["ids"] == [["0"]]


def test_a_collection_refuses_an_encoder_whose_weights_changed(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llara_rag.encoding.encoder

    adapter = tmp_path / "adapter"
    write_random_adapter(tiny_backbone_dir, adapter, seed=1)
    function = LLaRAEmbeddingFunction(model_name=str(tiny_backbone_dir), adapter=str(adapter))
    client(tmp_path / "db").create_collection("docs", embedding_function=function).add(
        ids=["0"], documents=DOCUMENTS[:1]
    )
    made_with = function.fingerprint
    write_random_adapter(tiny_backbone_dir, adapter, seed=2)
    monkeypatch.setattr(llara_rag.encoding.encoder, "_SHARED", {})  # a new process

    reopened = client(tmp_path / "db").get_collection("docs")
    with pytest.raises(ModelMismatchError, match=f"made by encoder {made_with}"):
        reopened.query(query_texts=[QUERY], n_results=1)


def test_a_collection_made_by_llara_rag_index_answers_query_texts(
    tiny_backbone_dir: Path, tmp_path: Path
) -> None:
    from llara_rag.cli import main

    docs = write_corpus(tmp_path / "docs", n_files=3)
    db = tmp_path / "db"
    assert main(["index", str(docs), "--db", str(db), "--model", str(tiny_backbone_dir)]) == 0

    made_by_cli = client(db).get_collection("llara")
    function = LLaRAEmbeddingFunction.for_collection(made_by_cli)
    collection = client(db).get_collection("llara", embedding_function=function)
    found = collection.query(query_texts=[QUERY], n_results=3, include=["distances"])
    expected = collection.query(
        query_embeddings=function.encoder.encode_queries([QUERY]), n_results=3, include=["distances"]
    )
    assert found["ids"] == expected["ids"]
    np.testing.assert_allclose(found["distances"], expected["distances"], atol=1e-5)
    assert function.fingerprint == made_by_cli.metadata["llara:fingerprint"]


def test_for_collection_reads_a_stored_configuration_and_names_a_foreign_collection(
    function: LLaRAEmbeddingFunction, tmp_path: Path
) -> None:
    made_by_chroma = client(tmp_path).create_collection("docs", embedding_function=function)
    rebuilt = LLaRAEmbeddingFunction.for_collection(made_by_chroma, device="cpu")
    assert rebuilt.get_config() == function.get_config() and rebuilt.config.device == "cpu"
    foreign = client(tmp_path).create_collection("foreign", embedding_function=None)
    with pytest.raises(ModelMismatchError, match="'foreign' records no LLaRA encoder"):
        LLaRAEmbeddingFunction.for_collection(foreign)


def test_a_collection_made_at_int8_is_searched_at_any_precision(
    tiny_backbone_dir: Path, tmp_path: Path
) -> None:
    """int8 shares fp32's fingerprint (measured interchangeable): the precision is each machine's choice and
    never stored; a configuration from when int8 stored itself still opens, the key ignored."""
    model = str(tiny_backbone_dir)
    at_int8 = LLaRAEmbeddingFunction(model_name=model, adapter=None, precision="int8")
    assert "int8" not in at_int8.get_config()
    client(tmp_path).create_collection("eight", embedding_function=at_int8)
    rebuilt = LLaRAEmbeddingFunction.for_collection(
        client(tmp_path).get_collection("eight"), precision="fp32"
    )
    assert rebuilt.config.precision == "fp32" and rebuilt.fingerprint == at_int8.fingerprint
    legacy = LLaRAEmbeddingFunction.build_from_config({**at_int8.get_config(), "int8": True})
    assert legacy.get_config() == at_int8.get_config()
