"""The chat engine: citations, memory counted in the generator's tokens, follow-ups retrieved as asked."""

from __future__ import annotations

import pytest
from llama_index.core import Settings
from llama_index.core.llms import MockLLM

from llara_rag.chat.generator import LocalGenerator


@pytest.fixture(autouse=True)
def _no_default_llm() -> None:
    Settings.llm = MockLLM()


def test_citations_name_the_file_and_the_chunk_ingestion_wrote() -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from llara_rag.chat.engine import cite

    ingested = TextNode(id_="/docs/policy.md#2", text="x", metadata={"file_name": "policy.md"})
    elsewhere = TextNode(id_="3f2a", text="y", metadata={})
    labels = [c.label for c in cite([NodeWithScore(node=ingested, score=0.5), NodeWithScore(node=elsewhere)])]
    assert labels == ["[1] policy.md, chunk 3 (score 0.50)", "[2] 3f2a"]


def test_chat_memory_counts_tokens_with_the_generators_tokenizer(tiny_generator: LocalGenerator) -> None:
    from llara_rag.chat.engine import chat_memory

    text = "how does the index store a chunk?"
    assert chat_memory(tiny_generator, 64).tokenizer_fn(text) == tiny_generator.tokenizer.encode(text)
    assert len(chat_memory(MockLLM(), 64).tokenizer_fn(text)) == 8  # no tokenizer: LlamaIndex's default


def test_follow_ups_are_retrieved_in_the_users_words_unless_condensing_is_asked() -> None:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from llara_rag.chat.engine import ChatConfig, build_chat_engine

    class Recording(BaseRetriever):
        def __init__(self) -> None:
            super().__init__()
            self.queries: list[str] = []

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            self.queries.append(query_bundle.query_str)
            return [
                NodeWithScore(node=TextNode(text="A SEV1 page is acknowledged within 5 minutes."), score=1.0)
            ]

    for condense in (False, True):
        retriever = Recording()
        engine = build_chat_engine(retriever, MockLLM(max_tokens=8), ChatConfig(condense_questions=condense))
        engine.chat("How fast is a SEV1 page acknowledged?")
        engine.chat("Can I deploy on a Friday?")
        assert (retriever.queries[-1] == "Can I deploy on a Friday?") is not condense, retriever.queries
