"""The LlamaHub package: the namespace import gives the core class, usable in a LlamaIndex index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode
from llama_index.embeddings.llara import LLaRAEmbedding

import llara_rag.encoding.embedding

DOCUMENTS = ["cats purr when happy", "dogs bark at the engine", "the stock market fell on monday"]
QUERY = "why does the cat purr"


def test_the_namespace_package_re_exports_the_core_class() -> None:
    assert LLaRAEmbedding is llara_rag.encoding.embedding.LLaRAEmbedding
    assert BaseEmbedding in LLaRAEmbedding.__mro__


def test_an_index_retrieves_with_the_query_prompt(tiny_backbone_dir: Path) -> None:
    embedding = LLaRAEmbedding(model_name=str(tiny_backbone_dir), query_max_length=16, passage_max_length=32)
    Settings.llm = MockLLM()
    Settings.embed_model = embedding
    nodes = [TextNode(id_=str(i), text=text) for i, text in enumerate(DOCUMENTS)]
    retriever = VectorStoreIndex(nodes, embed_model=embedding).as_retriever(similarity_top_k=len(DOCUMENTS))

    found = {hit.node.node_id: hit.score for hit in retriever.retrieve(QUERY)}
    encoder = embedding.encoder
    expected = encoder.encode_passages(DOCUMENTS) @ encoder.encode_queries([QUERY])[0]
    np.testing.assert_allclose([found[str(i)] for i in range(len(DOCUMENTS))], expected, atol=1e-5)
