"""Grounded answers: sentences of the retrieved chunks quoted with their citation, or a refusal."""

from __future__ import annotations

from pathlib import Path

from llama_index.core.schema import NodeWithScore, TextNode

from llara_rag.chat.grounded import NOT_ANSWERED, ExtractConfig, ExtractiveChatEngine, extract, sentences

SAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "sample_docs"
BM25 = ExtractConfig(scorer="bm25")


def _nodes(*names: str) -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(text=(SAMPLE_DOCS / name).read_text(), metadata={"file_name": name}), score=1.0
        )
        for name in names
    ]


def test_sentences_join_wrapped_lines_keep_list_items_and_drop_headings() -> None:
    text = "# Title\n\nA first sentence that is\nwrapped over two lines. A second one here.\n\n- **Item** one is here\n- item two is here"
    repeated = NodeWithScore(node=TextNode(text="A second one here."), score=0.5)
    found = sentences([NodeWithScore(node=TextNode(text=text), score=1.0), repeated])
    assert [s.text for s in found] == [
        "A first sentence that is wrapped over two lines.",
        "A second one here.",
        "Item one is here",
        "item two is here",
    ]
    assert {s.source for s in found} == {1}  # the second chunk's sentence was already quoted from the first


def test_the_answering_sentence_is_quoted_with_the_number_of_its_source() -> None:
    nodes = _nodes("deployment_process.md", "on_call_policy.md")
    answer = extract("How quickly must a SEV1 page be acknowledged?", nodes, BM25)
    assert answer.answers
    assert answer.text().startswith(
        '"A SEV1 (customers cannot book or track shipments) must be acknowledged within 5 minutes'
    )
    assert answer.quoted[0].source == 2 and answer.text().split('"')[2].strip().startswith("[2]")


def test_a_follow_up_is_scored_with_the_previous_question_too() -> None:
    nodes = _nodes("on_call_policy.md")
    alone = extract("What about a SEV2?", nodes, BM25)
    follow_up = extract(
        "What about a SEV2?", nodes, BM25, previous="How quickly must a SEV1 page be acknowledged?"
    )
    assert "acknowledged within 30 minutes" in follow_up.quoted[0].text
    assert alone.quoted[0].text != follow_up.quoted[0].text or "30 minutes" in alone.quoted[0].text


def test_an_unanswered_question_is_refused_showing_the_closest_sentence() -> None:
    answer = extract("Can I bring my dog to the office?", _nodes("office_equipment.md"), BM25)
    assert not answer.answers and answer.text().startswith(f'{NOT_ANSWERED} Closest: "')
    assert extract("anything?", [], BM25).text() == NOT_ANSWERED


def test_the_engine_keeps_the_conversation_for_follow_ups_until_reset() -> None:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.schema import QueryBundle

    class Fixed(BaseRetriever):
        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            return _nodes("on_call_policy.md")

    engine = ExtractiveChatEngine(Fixed(), BM25)
    engine.chat("How quickly must a SEV1 page be acknowledged?")
    streamed = engine.stream_chat("What about a SEV2?")
    assert "acknowledged within 30 minutes" in "".join(streamed.response_gen)
    assert streamed.sources[0].raw_input == {"message": "What about a SEV2?"}
    assert [m.role.value for m in engine.chat_history] == ["user", "assistant"] * 2
    engine.reset()
    assert engine.chat_history == []


def test_words_the_whole_collection_uses_weigh_little_in_whether_a_sentence_answers() -> None:
    """The company's name is in many documents: with the collection's IDF, a question about its CEO, whom
    no document names, is refused; the IDF over the retrieved sentences alone would quote the name."""
    from llara_rag.indexing.lexical import LexicalIndex

    files = sorted(SAMPLE_DOCS.glob("*.md"))
    collection = LexicalIndex.build([f.name for f in files], [f.read_text() for f in files], "r")
    question = "Who is the CEO of Halyard Freight?"
    nodes = _nodes("security_and_access.md", "travel_policy.md")
    assert extract(question, nodes, BM25).answers
    refused = extract(question, nodes, BM25, idf=collection.idf)
    assert not refused.answers and refused.text().startswith(NOT_ANSWERED)
    answered = extract("Who is the data protection officer?", nodes, BM25, idf=collection.idf)
    assert answered.answers
