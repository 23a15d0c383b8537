"""Answers users can trust: each answer system asked the sample handbook's question set, and scored.

The questions (``examples/sample_docs_questions.jsonl``) were written from the eight documents of
``examples/sample_docs``: each names the files that answer it and the fact an answer must state, in the
forms accepted (``accept``) and forms that would contradict it (``contradict``); ``follows`` continues
the previous question's conversation (a follow-up such as "What about a SEV2?"), any other question
starts a fresh one; a question with no file is not answered by the handbook, and the right reply says so.

Scores, per system, all deterministic:

- **hit@k**: one of the answering files is among the k chunks retrieved (the chat's ``top_k``);
- **correct answer** (answerable questions): after normalising both texts (lower case, typographic quotes
  and dashes made plain, thousands separators and the space in ``5 %`` dropped, whitespace collapsed), one
  accepted form appears in the answer as whole words, no contradicting form does, and the answer is not a
  refusal;
- **correct refusal** (unanswerable questions): the answer is a refusal, i.e. contains one of
  :data:`REFUSALS` ("do not say", "not mentioned", ...).

Systems: free generation with the embedded generator (``--answer generate``, the chat's settings of
today), the grounded mode (``--answer extract``) with each sentence scorer, and any ``--endpoint``
(``openai:URL`` or ``ollama:MODEL``). A sweep over the grounded mode's refusal threshold shows how it was
chosen; it is fitted on this same set, so its figures are in-sample.

    python benchmarks/answers.py [--db DIR] [--skip-generate] [--endpoint openai:http://localhost:8080/v1]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llara_rag.chat.engine import ChatConfig, build_chat_engine
from llara_rag.chat.generator import GeneratorConfig, load_generator
from llara_rag.chat.grounded import ExtractConfig, collection_idf, extract, search_text
from llara_rag.encoding.adapter import DEFAULT_ADAPTER, adapter_digest
from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.indexing.ingest import index_folder
from llara_rag.indexing.store import StoreConfig
from llara_rag.retrieval.retriever import open_retriever

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_DOCS = ROOT / "examples" / "sample_docs"
QUESTIONS = ROOT / "examples" / "sample_docs_questions.jsonl"
REFUSALS = (
    "do not say",
    "does not say",
    "don't say",
    "doesn't say",
    "not mentioned",
    "does not mention",
    "do not mention",
    "no information",
    "not specified",
    "not stated",
    "cannot find",
    "can't find",
    "do not contain",
    "does not contain",
    "not provided",
    "unable to",
)
logger = logging.getLogger("answers")
SCORERS = ("bm25", "encoder", "both")
THRESHOLDS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)


def normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    text = text.replace("\u201d", '"').replace("\u2013", "-").replace("\u2014", "-").replace("**", "")
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    text = re.sub(r"(\d) %", r"\1%", text)
    return " ".join(text.split())


def states(answer: str, form: str) -> bool:
    """Whether ``form`` appears in ``answer`` as whole words (both normalised)."""
    return re.search(rf"(?<!\w){re.escape(normalise(form))}(?!\w)", normalise(answer)) is not None


def refuses(answer: str) -> bool:
    return any(states(answer, phrase) for phrase in REFUSALS)


def correct(question: dict[str, Any], answer: str) -> bool:
    if question["fact"] is None:
        return refuses(answer)
    return (
        any(states(answer, form) for form in question["accept"])
        and not any(states(answer, form) for form in question["contradict"])
        and not refuses(answer)
    )


@dataclass
class Run:
    name: str
    answers: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, questions: list[dict[str, Any]]) -> dict[str, Any]:
        answerable = [a for q, a in zip(questions, self.answers) if q["fact"] is not None]
        unanswerable = [a for q, a in zip(questions, self.answers) if q["fact"] is None]
        return {
            "system": self.name,
            "hit_at_k": sum(a["hit"] for a in answerable) / len(answerable),
            "correct_answers": sum(a["correct"] for a in answerable) / len(answerable),
            "correct_refusals": sum(a["correct"] for a in unanswerable) / len(unanswerable),
            "seconds_per_answer": sum(a["seconds"] for a in self.answers) / len(self.answers),
        }


def ask_all(name: str, engine: Any, questions: list[dict[str, Any]]) -> Run:
    run = Run(name)
    for question in questions:
        if not question["follows"]:
            engine.reset()
        started = time.perf_counter()
        response = engine.chat(question["question"])
        seconds = time.perf_counter() - started
        files = [hit.node.metadata.get("file_name") for hit in response.source_nodes]
        answer = str(response.response).strip()
        run.answers.append(
            {
                "question": question["question"],
                "answer": answer,
                "retrieved": files,
                "hit": bool(set(files) & set(question["files"])),
                "correct": correct(question, answer),
                "seconds": seconds,
            }
        )
        logger.info("%s | %s -> %s", name, question["question"], answer[:120])
    return run


def threshold_sweep(
    retriever: Any, encoder: Any, questions: list[dict[str, Any]], scorer: str
) -> list[dict[str, float]]:
    """Correct answers and refusals of the grounded mode at each refusal threshold (same retrieval)."""
    rows = []
    cached = []
    idf = collection_idf(retriever)
    previous = None
    for question in questions:
        previous = previous if question["follows"] else None
        nodes = retriever.retrieve(search_text(question["question"], previous, ExtractConfig()))
        cached.append((question, nodes, previous))
        previous = question["question"]
    for threshold in THRESHOLDS:
        config = ExtractConfig(scorer=scorer, min_coverage=threshold)  # type: ignore[arg-type]
        marks = [
            (
                q["fact"] is None,
                correct(
                    q, extract(q["question"], nodes, config, encoder=encoder, previous=p, idf=idf).text()
                ),
            )
            for q, nodes, p in cached
        ]
        answerable = [ok for unanswerable, ok in marks if not unanswerable]
        unanswerable = [ok for refused, ok in marks if refused]
        rows.append(
            {
                "min_coverage": threshold,
                "correct_answers": sum(answerable) / len(answerable),
                "correct_refusals": sum(unanswerable) / len(unanswerable),
            }
        )
    return rows


def kept_rows(path: Path, measured: set[str]) -> list[dict[str, Any]]:
    """The last run's rows of systems this run left out (rows from before adapters were recorded name none)."""
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text(encoding="utf-8"))["summaries"]
    return [{"adapter": "earlier", **row} for row in earlier if row["system"] not in measured]


def goals(report: dict[str, Any]) -> str:
    """Issue #39's goals, checked on the grounded mode's default row."""
    default = f"extract, {report['default_extract']['scorer']} scorer"
    row = next((s for s in report["summaries"] if s["system"] == default), None)
    if row is None:
        return ""
    met = row["correct_answers"] >= 0.9 and row["correct_refusals"] >= 0.8
    return (
        f"Goals: at least 90 % correct answers and 80 % correct refusals for the grounded mode ({default}): "
        f"{row['correct_answers']:.0%} and {row['correct_refusals']:.0%}, {'met' if met else 'not met'}."
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Answers on the sample handbook's question set",
        "",
        f"`python benchmarks/answers.py`: {report['answerable'] + report['unanswerable']} questions from `{report['questions']}` "
        f"({report['answerable']} answerable, {report['unanswerable']} not answered by the handbook, "
        f"{report['follow_ups']} follow-ups), over `examples/sample_docs` indexed with the default model, "
        f"retrieval as `llara-rag chat` retrieves ({report['mode']}, top {report['top_k']}). "
        "CPU. Scoring: see the benchmark's docstring (accepted fact form present as whole words, no "
        "contradicting form, no refusal; refusals by phrase).",
        "",
        f"| system | hit@{report['top_k']} | correct answers | correct refusals | s / answer | default adapter |",
        "|---|---:|---:|---:|---:|---|",
        *(
            f"| {s['system']} | {s['hit_at_k']:.0%} | {s['correct_answers']:.0%} | {s['correct_refusals']:.0%} "
            f"| {s['seconds_per_answer']:.1f} | {s.get('adapter', 'earlier')} |"
            for s in report["summaries"]
        ),
        "",
        "The grounded mode's defaults follow from this table: the BM25 sentence scorer (more correct answers "
        "than the encoder or both, and no encoder pass over the sentences), quoting the best sentence and a "
        "second one whose coverage is close, and `min_coverage` "
        f"{report['default_extract']['min_coverage']} below. {goals(report)}",
        "",
        f"Refusal threshold of the grounded mode ({report['threshold_sweep']['scorer']} scorer; the share of the question's "
        "terms in the best sentence, each weighted by its IDF over the collection), fitted on this set (in-sample):",
        "",
        "| min_coverage | correct answers | correct refusals |",
        "|---:|---:|---:|",
        *(
            f"| {r['min_coverage']:.2f} | {r['correct_answers']:.0%} | {r['correct_refusals']:.0%} |"
            for r in report["threshold_sweep"]["rows"]
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default=str(Path(tempfile.gettempdir()) / "llara-rag-examples" / "answers-db")
    )
    parser.add_argument("--max-new-tokens", type=int, default=200, help="the examples' answer length")
    parser.add_argument("--skip-generate", action="store_true", help="leave free generation out")
    parser.add_argument(
        "--scorers",
        default=",".join(SCORERS),
        help="the grounded mode's sentence scorers to run, comma-separated; the rows of those left out are "
        "kept from the last run (each row names the adapter it was measured with)",
    )
    parser.add_argument("--endpoint", help="also a server: openai:URL or ollama:MODEL")
    parser.add_argument("--endpoint-model", help="the model the openai: endpoint runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "llama_index", "bm25s", "llara_rag"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    questions = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    embed_model = LLaRAEmbedding()
    store = StoreConfig(path=args.db, collection="answers")
    index_folder(SAMPLE_DOCS, store, embed_model)
    chat = ChatConfig()
    retriever = open_retriever(store, embed_model, chat.retrieval)
    encoder = embed_model.encoder

    runs = []
    if not args.skip_generate:
        llm = load_generator(GeneratorConfig(max_new_tokens=args.max_new_tokens))
        generate = chat.model_copy(update={"answer": "generate"})
        runs.append(
            ask_all(
                "generate (embedded SmolLM2-135M)", build_chat_engine(retriever, llm, generate), questions
            )
        )
    for scorer in args.scorers.split(","):
        grounded = chat.model_copy(update={"answer": "extract", "extract": ExtractConfig(scorer=scorer)})  # type: ignore[arg-type]
        engine = build_chat_engine(retriever, None, grounded, encoder)
        runs.append(ask_all(f"extract, {scorer} scorer", engine, questions))
    if args.endpoint:
        config = GeneratorConfig(
            model=args.endpoint, endpoint_model=args.endpoint_model, max_new_tokens=args.max_new_tokens
        )
        generate = chat.model_copy(update={"answer": "generate"})
        runs.append(
            ask_all(
                f"generate ({args.endpoint})",
                build_chat_engine(retriever, load_generator(config), generate),
                questions,
            )
        )
    sweep = threshold_sweep(retriever, encoder, questions, ExtractConfig().scorer)

    adapter = adapter_digest(DEFAULT_ADAPTER)[:8]
    summaries = [{**run.summary(questions), "adapter": adapter} for run in runs]
    summaries += kept_rows(RESULTS / "answers.json", {summary["system"] for summary in summaries})
    n_unanswerable = sum(q["fact"] is None for q in questions)
    report = {
        "questions": str(QUESTIONS.relative_to(ROOT)),
        "answerable": len(questions) - n_unanswerable,
        "unanswerable": n_unanswerable,
        "follow_ups": sum(q["follows"] for q in questions),
        "top_k": chat.retrieval.top_k,
        "mode": chat.retrieval.mode,
        "default_extract": ExtractConfig().model_dump(),
        "summaries": summaries,
        "threshold_sweep": {"scorer": ExtractConfig().scorer, "rows": sweep},
        "answers": {run.name: run.answers for run in runs},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "answers.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "answers.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
