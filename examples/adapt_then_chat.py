"""Adapt the embedder to a private folder (no labels), re-index, and compare what each index retrieves.

    python examples/adapt_then_chat.py                  # the sample handbook, 40 training steps
    python examples/adapt_then_chat.py --max-steps 400  # a longer budget retrieves better

LLaRA's adaptation keeps training the shipped default's small LoRA adapter on the folder's own text, so
the embedder learns the folder's vocabulary (SEV1, Keel, TravelDesk...). For a quick run it trains the two
corpus stages alone; `llara-rag adapt` also replays the default's supervised stage after them (about 20
minutes more on two cores with --bf16, docs/adapt.md). The vectors change, so the adapted model gets its own
collection: the store refuses to mix vectors of two encoders. Each question below names the file that
answers it, so the comparison is a small, honest retrieval test, not an impression.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from llara_rag.chat.engine import ChatConfig
from llara_rag.chat.generator import GeneratorConfig
from llara_rag.cli.session import open_chat_session
from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.indexing.ingest import index_folder
from llara_rag.indexing.store import StoreConfig
from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search
from llara_rag.training import AdaptationArguments, adapt

SAMPLE_DOCS = Path(__file__).resolve().parent / "sample_docs"
QUESTIONS = {
    "How quickly must a SEV1 page be acknowledged?": "on_call_policy.md",
    "Is alcohol ever reimbursed?": "expense_rules.md",
    "Can I deploy to production on a Friday?": "deployment_process.md",
    "Who approves exporting customer data to a laptop?": "security_and_access.md",
    "How much can I spend on a monitor and chair for home?": "office_equipment.md",
    "When must the post-incident review be drafted?": "incident_review_guide.md",
    "What is the hotel limit per night in London?": "travel_policy.md",
    "How many unused leave days can I carry over?": "leave_and_time_off.md",
}


def compare(before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    """Prints each question's top files before and after, marking the file that holds the answer."""
    for label, rankings in (("before", before), ("after", after)):
        hits = sum(rankings[question][:1] == [expected] for question, expected in QUESTIONS.items())
        print(
            f"{label:>6} adaptation: the answer's file ranked first for {hits} of {len(QUESTIONS)} questions"
        )
    for question, expected in QUESTIONS.items():
        print(f"\n{question}")
        for label, rankings in (("before", before), ("after", after)):
            marked = [f"*{name}*" if name == expected else name for name in rankings[question]]
            print(f"  {label:>6}: {', '.join(marked)}")


def rankings(store: StoreConfig, embed_model: LLaRAEmbedding, k: int) -> dict[str, list[str]]:
    """Each question's top files by the embedder alone (dense mode): what adaptation changes."""
    dense = open_retriever(store, embed_model, RetrievalConfig(mode="dense", top_k=k))
    return {question: [hit.file_name or "?" for hit in search(dense, question)] for question in QUESTIONS}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--docs", type=Path, default=SAMPLE_DOCS, help="folder of documents (default: the sample)"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "llara-rag-examples")
    parser.add_argument("--model", default="smollm2", help="the embedding backbone to adapt")
    parser.add_argument(
        "--generator", default="smollm2", help="the chat model: embedded alias, openai:URL or ollama:MODEL"
    )
    parser.add_argument(
        "--answer", choices=("auto", "generate", "extract"), default="auto", help="quote or generate answers"
    )
    parser.add_argument("--max-steps", type=int, default=80, help="adaptation budget in optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=150)
    parser.add_argument("-k", type=int, default=3, help="files shown per question")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    base = LLaRAEmbedding(args.model)
    base_store = StoreConfig(path=args.workdir / "db", collection=f"handbook-base-{base.fingerprint}")
    print(index_folder(args.docs, base_store, base).report())

    adapter_dir = args.workdir / "adapter"
    training = AdaptationArguments(
        output_dir=str(args.workdir / "adapter.checkpoints"),
        model=args.model,
        max_steps=args.max_steps,
        stages="ebae-ebar,contrastive",
        per_device_train_batch_size=args.batch_size,
        save_steps=args.max_steps,
        logging_steps=max(1, args.max_steps // 4),
    )
    result = adapt(args.docs, adapter_dir, training, resume=False)
    steps = ", ".join(f"{name} {stage['steps']}" for name, stage in result.training["stages"].items())
    print(f"Adapter written to {result.adapter} after {steps} steps")

    adapted = LLaRAEmbedding(args.model, adapter=str(result.adapter))
    # One collection per adapter: its vectors differ from any other adapter's, and the store would refuse a mix.
    adapted_store = StoreConfig(
        path=args.workdir / "db", collection=f"handbook-adapted-{adapted.fingerprint}"
    )
    print(index_folder(args.docs, adapted_store, adapted).report())

    compare(rankings(base_store, base, args.k), rankings(adapted_store, adapted, args.k))

    session = open_chat_session(
        adapted_store,
        adapted,
        GeneratorConfig(model=args.generator, max_new_tokens=args.max_new_tokens),
        ChatConfig(retrieval=RetrievalConfig(mode="hybrid", top_k=3), answer=args.answer),  # BM25 + adapted
    )
    question = next(iter(QUESTIONS))
    print(f"\nyou> {question}\nassistant> ", end="", flush=True)
    session.ask(question)


if __name__ == "__main__":
    main()
