"""LLaRAEmbeddings: EBAE for documents, EBAR for queries, sync and async, inside LangChain's Chroma."""

from __future__ import annotations

import asyncio
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from langchain_chroma import Chroma
from langchain_llara import LLaRAEmbeddings

from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.errors import InvalidInputError

DOCUMENTS = ["cats purr when happy", "dogs bark at the engine", "the stock market fell on monday"]
QUERY = "why does the cat purr"


@pytest.fixture()
def embeddings(tiny_backbone_dir: Path) -> LLaRAEmbeddings:
    return LLaRAEmbeddings(model_name=str(tiny_backbone_dir), query_max_length=16, passage_max_length=32)


def test_documents_take_the_passage_prompt_and_queries_the_query_prompt(embeddings: LLaRAEmbeddings) -> None:
    encoder = embeddings.encoder
    np.testing.assert_allclose(
        embeddings.embed_documents(DOCUMENTS), encoder.encode_passages(DOCUMENTS), atol=1e-6
    )
    np.testing.assert_allclose(embeddings.embed_query(QUERY), encoder.encode_queries([QUERY])[0], atol=1e-6)
    assert not np.allclose(embeddings.embed_query(QUERY), embeddings.embed_documents([QUERY])[0], atol=1e-3)


def test_async_variants_match_the_sync_ones(embeddings: LLaRAEmbeddings) -> None:
    async def both() -> tuple[list[list[float]], list[float]]:
        return await embeddings.aembed_documents(DOCUMENTS), await embeddings.aembed_query(QUERY)

    documents, query = asyncio.run(both())
    np.testing.assert_allclose(documents, embeddings.embed_documents(DOCUMENTS), atol=1e-6)
    np.testing.assert_allclose(query, embeddings.embed_query(QUERY), atol=1e-6)


def test_langchain_chroma_searches_with_the_query_prompt(embeddings: LLaRAEmbeddings, tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    store = Chroma(collection_name="docs", embedding_function=embeddings, client=client)
    store.add_texts(DOCUMENTS, ids=[str(i) for i in range(len(DOCUMENTS))])

    found = store.similarity_search_with_score(QUERY, k=len(DOCUMENTS))
    expected = store.similarity_search_by_vector_with_relevance_scores(
        embeddings.embed_query(QUERY), k=len(DOCUMENTS)
    )
    assert [(doc.id, pytest.approx(score, abs=1e-5)) for doc, score in found] == [
        (doc.id, score) for doc, score in expected
    ]
    stored = client.get_collection("docs").get(ids=["0", "1", "2"], include=["embeddings"])["embeddings"]
    np.testing.assert_allclose(stored, embeddings.encoder.encode_passages(DOCUMENTS), atol=1e-6)


def test_it_shares_the_model_and_fingerprint_with_llama_index(
    embeddings: LLaRAEmbeddings, tiny_backbone_dir: Path
) -> None:
    llama = LLaRAEmbedding(model_name=str(tiny_backbone_dir), query_max_length=16, passage_max_length=32)
    assert embeddings.encoder is llama.encoder
    assert embeddings.fingerprint == llama.fingerprint


def test_empty_text_is_refused_by_name(embeddings: LLaRAEmbeddings) -> None:
    with pytest.raises(InvalidInputError, match="Text 0"):
        embeddings.embed_query(" ")


def test_precision_reaches_the_encoder(tiny_backbone_dir: Path) -> None:
    embeddings = LLaRAEmbeddings(model_name=str(tiny_backbone_dir), device="cpu", precision="bf16")
    assert embeddings.encoder.precision == "bf16"
    assert np.linalg.norm(embeddings.embed_query(QUERY)) == pytest.approx(1, abs=1e-3)
