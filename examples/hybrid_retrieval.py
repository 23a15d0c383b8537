"""Lexical, dense and hybrid retrieval over one indexed folder, side by side, then an answer.

    python examples/hybrid_retrieval.py
    python examples/hybrid_retrieval.py --docs ~/my-notes "my question" "another question"

Keyword search (BM25) finds exact terms (SEV1, Deskbird); dense retrieval (LLaRA) finds paraphrases.
The folder is indexed into Chroma as ``llara-rag index`` indexes it (the vectors, and the collection's
BM25 index beside them), and each question is retrieved the three ways ``llara-rag query --mode``
offers, through the same ``LLaRAHybridRetriever``: the hybrid sums the z-normalised scores of each side's
best chunks (up to 1,000), the fusion ``llara-rag eval`` measures. Every chunk is listed with the side(s)
that returned it and its rank there; the answer is written from the hybrid's chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
from pathlib import Path

from llama_index.core.query_engine import RetrieverQueryEngine

from llara_rag.chat.generator import GeneratorConfig, LocalGenerator
from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.indexing.ingest import index_folder
from llara_rag.indexing.store import StoreConfig
from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search

SAMPLE_DOCS = Path(__file__).resolve().parent / "sample_docs"
QUESTIONS = [
    "Which app do I use to book a desk?",
    "Who must agree before customer data leaves for a laptop?",
    "How long does a canary release run before promotion?",
]


def default_db(docs: Path, fingerprint: str) -> Path:
    """A database per documents folder and encoder, in the temp directory: chatting with your notes never
    cites the sample, and an upgrade that changes the default encoder starts a fresh database."""
    digest = hashlib.sha256(str(docs.resolve()).encode()).hexdigest()[:12]
    return (
        Path(tempfile.gettempdir())
        / "llara-rag-examples"
        / f"db-{docs.resolve().name}-{digest}-{fingerprint}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("questions", nargs="*", default=QUESTIONS)
    parser.add_argument("--docs", type=Path, default=SAMPLE_DOCS)
    parser.add_argument("--db", type=Path, help="the Chroma folder (default: one per --docs folder, in /tmp)")
    parser.add_argument("--model", default="smollm2", help="the embedding backbone")
    parser.add_argument("--generator", default="smollm2", help="the chat model that writes the answer")
    parser.add_argument("--max-new-tokens", type=int, default=150)
    parser.add_argument("-k", type=int, default=3, help="chunks per ranking")
    parser.add_argument("--alpha", type=float, default=0.5, help="the dense side's weight in the hybrid")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    embed_model = LLaRAEmbedding(args.model)
    store = StoreConfig(
        path=args.db or default_db(args.docs, embed_model.fingerprint), collection="hybrid-retrieval"
    )
    print(index_folder(args.docs, store, embed_model).report())
    retrievers = {
        mode: open_retriever(store, embed_model, RetrievalConfig(mode=mode, top_k=args.k, alpha=args.alpha))
        for mode in ("lexical", "dense", "hybrid")
    }
    for question in args.questions:
        print(f"\n{question}")
        for mode, retriever in retrievers.items():
            ranking = ", ".join(
                f"{hit.file_name} ({hit.describe_sides()})" for hit in search(retriever, question)
            )
            print(f"  {mode:>7}: {ranking or 'nothing'}")
    llm = LocalGenerator(GeneratorConfig(model=args.generator, max_new_tokens=args.max_new_tokens))
    answer = RetrieverQueryEngine.from_args(retrievers["hybrid"], llm=llm).query(args.questions[0])
    print(f"\n{args.questions[0]}\n  answer: {answer}")


if __name__ == "__main__":
    main()
