"""One folder, three doors: the same LLaRA top-3 through LlamaIndex, LangChain and plain Chroma.

Each file of the folder is one document. The three adapters are built with default settings, so they
share one loaded model (the packaged SmolLM2-135M unless ``--model`` says otherwise) and one fingerprint.

    pip install -e . -e integrations/llama-index-embeddings-llara -e "integrations/langchain-llara[chroma]"
    python examples/same_results_everywhere.py            # examples/sample_docs and three questions on it
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import chromadb
from chromadb.config import Settings as ChromaSettings
from langchain_chroma import Chroma
from langchain_llara import LLaRAEmbeddings
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.embeddings.llara import LLaRAEmbedding

from llara_rag.encoding.backbone import DEFAULT_MODEL
from llara_rag.indexing.chroma_embedding import LLaRAEmbeddingFunction

SAMPLE_DOCS = Path(__file__).resolve().parent / "sample_docs"
QUERIES = (
    "How much can I spend on meals when I travel for work?",
    "Who chairs the meeting where incident reviews are discussed?",
    "How many days of paid annual leave do I get?",
)
TOP_K = 3


def read_folder(folder: Path) -> dict[str, str]:
    documents = {
        path.name: path.read_text(encoding="utf-8") for path in sorted(folder.iterdir()) if path.is_file()
    }
    if len(documents) < TOP_K:
        raise SystemExit(
            f"{folder} holds {len(documents)} files; give a folder of at least {TOP_K} text files."
        )
    return documents


def through_llama_index(documents: dict[str, str], queries: list[str], model: str) -> list[list[str]]:
    embedding = LLaRAEmbedding(model_name=model)
    nodes = [TextNode(id_=name, text=text) for name, text in documents.items()]
    retriever = VectorStoreIndex(nodes, embed_model=embedding).as_retriever(similarity_top_k=TOP_K)
    return [[hit.node.node_id for hit in retriever.retrieve(query)] for query in queries]


def through_langchain(
    documents: dict[str, str], queries: list[str], model: str, client: chromadb.ClientAPI
) -> list[list[str]]:
    store = Chroma(
        collection_name="langchain", embedding_function=LLaRAEmbeddings(model_name=model), client=client
    )
    store.add_texts(list(documents.values()), ids=list(documents))
    return [[doc.id for doc in store.similarity_search(query, k=TOP_K)] for query in queries]


def through_chroma(
    documents: dict[str, str], queries: list[str], model: str, client: chromadb.ClientAPI
) -> list[list[str]]:
    collection = client.get_or_create_collection(
        "chroma", embedding_function=LLaRAEmbeddingFunction(model_name=model)
    )
    collection.add(ids=list(documents), documents=list(documents.values()))
    return collection.query(query_texts=queries, n_results=TOP_K)["ids"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=SAMPLE_DOCS)
    parser.add_argument(
        "--query", action="append", help="A question (repeatable); default: three on sample_docs."
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    documents = read_folder(args.folder)
    queries = args.query or list(QUERIES)
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    doors = {
        "LlamaIndex": through_llama_index(documents, queries, args.model),
        "LangChain": through_langchain(documents, queries, args.model, client),
        "Chroma": through_chroma(documents, queries, args.model, client),
    }
    shared = LLaRAEmbedding(model_name=args.model).encoder
    print(f"{len(documents)} documents from {args.folder}; encoder {shared.describe()}")
    one_model = (
        LLaRAEmbeddings(model_name=args.model).encoder is shared is LLaRAEmbeddingFunction(args.model).encoder
    )
    print(f"one model for all three doors: {one_model}\n")
    agree = True
    for index, query in enumerate(queries):
        tops = {door: results[index] for door, results in doors.items()}
        same = len({tuple(top) for top in tops.values()}) == 1
        agree &= same
        print(f"Q{index + 1}: {query}")
        for door, top in tops.items():
            print(f"  {door:<10} {', '.join(top)}")
        print(f"  same top-{TOP_K}: {'yes' if same else 'NO'}\n")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
