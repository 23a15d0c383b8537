"""LLaRAEmbedding inside LlamaIndex: sides, batching, serialisation, async, a real index."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.llms import MockLLM

from llara_rag import LLaRAEmbedding
from llara_rag.testing import write_random_adapter

DOCS = [
    "cats purr when happy",
    "rust is a systems programming language",
    "insulin and diabetes",
    "the stock market fell on monday",
]


@pytest.fixture(scope="module")
def embedding(tiny_backbone_dir: Path) -> LLaRAEmbedding:
    return LLaRAEmbedding(model_name=str(tiny_backbone_dir))


def test_queries_take_the_query_prompt_and_texts_the_passage_prompt(embedding: LLaRAEmbedding) -> None:
    encoder = embedding.encoder
    np.testing.assert_allclose(
        embedding.get_query_embedding(DOCS[0]), encoder.encode_queries(DOCS[:1])[0], atol=1e-6
    )
    np.testing.assert_allclose(
        embedding.get_text_embedding(DOCS[0]), encoder.encode_passages(DOCS[:1])[0], atol=1e-6
    )


def test_text_batches_reach_the_encoder_whole(
    embedding: LLaRAEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = embedding.encoder.encode_passages

    def counting(texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(len(texts))
        return original(texts, **kwargs)

    monkeypatch.setattr(embedding.encoder, "encode_passages", counting)
    vectors = embedding.get_text_embedding_batch(DOCS)
    assert calls == [len(DOCS)]
    np.testing.assert_allclose(vectors, original(DOCS), atol=1e-6)


def test_fields_serialise_and_the_model_loads_once(
    embedding: LLaRAEmbedding, tiny_backbone_dir: Path
) -> None:
    data = embedding.to_dict()
    assert data["model_name"] == str(tiny_backbone_dir)
    assert data["passage_max_length"] == 512 and data["prompts"]["prefix"] == '"'
    twin = LLaRAEmbedding.from_dict(data)
    assert twin.encoder is embedding.encoder
    assert (
        LLaRAEmbedding(model_name=str(tiny_backbone_dir), query_max_length=9).encoder is not embedding.encoder
    )


def test_async_embedding_does_not_block_the_event_loop(
    embedding: LLaRAEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = embedding.encoder.encode_passages

    def slow(texts: list[str], **kwargs: object) -> np.ndarray:
        time.sleep(0.5)
        return original(texts, **kwargs)

    monkeypatch.setattr(embedding.encoder, "encode_passages", slow)

    async def main() -> tuple[int, list[list[float]]]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        vectors = await embedding.aget_text_embedding_batch(DOCS)
        task.cancel()
        return ticks, vectors

    ticks, vectors = asyncio.run(main())
    assert ticks >= 10
    np.testing.assert_allclose(vectors, original(DOCS), atol=1e-6)
    query = asyncio.run(embedding.aget_query_embedding(DOCS[1]))
    np.testing.assert_allclose(query, embedding.get_query_embedding(DOCS[1]), atol=1e-6)


def test_vector_store_index_retrieves_and_answers(embedding: LLaRAEmbedding) -> None:
    Settings.llm = MockLLM()
    Settings.embed_model = embedding
    index = VectorStoreIndex.from_documents([Document(text=text) for text in DOCS])
    nodes = index.as_retriever(similarity_top_k=2).retrieve("cats purr when happy")
    assert len(nodes) == 2 and nodes[0].score >= nodes[1].score
    expected = (
        embedding.encoder.encode_passages(DOCS)
        @ embedding.encoder.encode_queries(["cats purr when happy"])[0]
    )
    assert nodes[0].text == DOCS[int(np.argmax(expected))]
    response = index.as_query_engine(similarity_top_k=2).query("cats purr when happy")
    assert len(response.source_nodes) == 2
    async_nodes = asyncio.run(index.as_retriever(similarity_top_k=2).aretrieve("cats purr when happy"))
    assert [n.text for n in async_nodes] == [n.text for n in nodes]


def test_the_ingestion_cache_sees_new_adapter_weights_in_the_same_folder(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_index.core.ingestion import IngestionCache, IngestionPipeline
    from llama_index.core.schema import TextNode

    import llara_rag.encoding.encoder

    adapter = tmp_path / "adapter"
    settings = {"model_name": str(tiny_backbone_dir), "adapter": str(adapter)}
    nodes = [TextNode(id_=str(i), text=text) for i, text in enumerate(DOCS)]
    cache = IngestionCache()

    def ingest() -> tuple[LLaRAEmbedding, list[list[float]]]:
        embedding = LLaRAEmbedding(**settings)
        pipeline = IngestionPipeline(transformations=[embedding], cache=cache)
        return embedding, [node.embedding for node in pipeline.run(nodes=[n.model_copy() for n in nodes])]

    write_random_adapter(tiny_backbone_dir, adapter, seed=1)
    first, first_vectors = ingest()

    write_random_adapter(tiny_backbone_dir, adapter, seed=2)  # `adapt` run again into the same folder
    monkeypatch.setattr(llara_rag.encoding.encoder, "_SHARED", {})  # a new process
    second, second_vectors = ingest()
    assert second.fingerprint != first.fingerprint
    np.testing.assert_allclose(second_vectors, second.encoder.encode_passages(DOCS), atol=1e-6)
    assert not np.allclose(second_vectors, first_vectors, atol=1e-4)
    assert second.to_dict()["fingerprint"] == second.fingerprint


def test_the_embeddings_cache_keeps_queries_and_passages_apart(tiny_backbone_dir: Path) -> None:
    from llama_index.core.storage.kvstore import SimpleKVStore

    store = SimpleKVStore()
    embedding = LLaRAEmbedding(model_name=str(tiny_backbone_dir), embeddings_cache=store)
    encoder = embedding.encoder
    text = DOCS[0]
    query = embedding.get_query_embedding(text)
    passage = embedding.get_text_embedding(text)
    np.testing.assert_allclose(query, encoder.encode_queries([text])[0], atol=1e-6)
    np.testing.assert_allclose(passage, encoder.encode_passages([text])[0], atol=1e-6)
    np.testing.assert_allclose(embedding.get_text_embedding_batch([text])[0], passage, atol=1e-6)
    np.testing.assert_allclose(asyncio.run(embedding.aget_query_embedding(text)), query, atol=1e-6)
    assert sorted(store.to_dict()) == [
        f"embeddings/llara-{embedding.fingerprint}-passage",
        f"embeddings/llara-{embedding.fingerprint}-query",
    ]
    assert LLaRAEmbedding.from_dict(embedding.to_dict()).embeddings_cache.store is store


def test_embed_batch_size_keeps_llama_index_limit(tiny_backbone_dir: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="less than or equal to 2048"):
        LLaRAEmbedding(model_name=str(tiny_backbone_dir), embed_batch_size=5000)
