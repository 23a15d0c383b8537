"""Index a folder of documents into Chroma with LLaRA embeddings, then chat with it — offline, no API key.

    python examples/chat_with_your_docs.py                      # the sample handbook, a scripted conversation
    python examples/chat_with_your_docs.py --interactive        # then your own questions (Ctrl-D quits)
    python examples/chat_with_your_docs.py --docs ~/my-notes --interactive
    python examples/chat_with_your_docs.py --generator openai:http://localhost:8080/v1   # a real LLM

Re-running is incremental: only new or changed files are embedded again. Each folder (and encoder) gets
its own database unless --db says otherwise, so chatting with your notes never cites the sample handbook.
Chunks are retrieved as `llara-rag chat` retrieves them (``--mode lexical``, ``dense`` or ``hybrid``),
and answered as it answers them: quoted from the documents with the embedded generator (``--answer
extract``, the measured default; ``--answer generate`` lets the 135M model write freely), written by the
LLM of an ``openai:URL`` or ``ollama:MODEL`` generator.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import get_args

from llara_rag.chat.engine import AnswerMode, ChatConfig
from llara_rag.chat.generator import GeneratorConfig
from llara_rag.cli.session import open_chat_session
from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.indexing.ingest import index_folder
from llara_rag.indexing.store import StoreConfig
from llara_rag.retrieval.fusion import DEFAULT_MODE, MODES
from llara_rag.retrieval.retriever import RetrievalConfig

SAMPLE_DOCS = Path(__file__).resolve().parent / "sample_docs"
CONVERSATION = [
    "How quickly must a SEV1 page be acknowledged?",
    "And what happens if the primary does not acknowledge it?",
    "Can I deploy to production on a Friday?",
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
    parser.add_argument(
        "--docs", type=Path, default=SAMPLE_DOCS, help="folder of documents (default: the sample)"
    )
    parser.add_argument("--db", type=Path, help="the Chroma folder (default: one per --docs folder, in /tmp)")
    parser.add_argument("--model", default="smollm2", help="the embedding backbone")
    parser.add_argument(
        "--generator", default="smollm2", help="the chat model: embedded alias, openai:URL or ollama:MODEL"
    )
    parser.add_argument("--generator-model", help="the model an openai: endpoint runs")
    parser.add_argument(
        "--answer", choices=get_args(AnswerMode), default="auto", help="quote (extract) or generate answers"
    )
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--interactive", action="store_true", help="chat in the terminal after the script")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="how chunks are retrieved")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    embed_model = LLaRAEmbedding(args.model)
    store = StoreConfig(
        path=args.db or default_db(args.docs, embed_model.fingerprint), collection="chat-with-your-docs"
    )
    print(index_folder(args.docs, store, embed_model).report())

    session = open_chat_session(
        store,
        embed_model,
        GeneratorConfig(
            model=args.generator, endpoint_model=args.generator_model, max_new_tokens=args.max_new_tokens
        ),
        ChatConfig(retrieval=RetrievalConfig(mode=args.mode, top_k=3), answer=args.answer),
    )
    for question in CONVERSATION:
        print(f"\nyou> {question}\nassistant> ", end="", flush=True)
        session.ask(question)
    if args.interactive:
        session.run()


if __name__ == "__main__":
    main()
