"""Does what users retrieve score what ``eval`` measures? Each mode, from ``llara-rag index`` to ``query``.

For each BEIR collection (cranfield and scifact by default):

1. every document is written to a file of its own (the text ``eval`` reads: title and text) and the
   folder goes through ``llara-rag index`` itself (``cli.main``; ``--chunk-size 512``, the encoder's
   passage limit, so most documents are one chunk; ``--no-file-name``, as the file names here are ids
   that ``eval`` never sees, unless ``--embed-file-names``);
2. each judged test query goes through what ``llara-rag query`` runs (``open_retriever`` + ``search``)
   in each mode; a document scores as its best chunk, and the 100 best documents are kept;
3. those runs are scored by the harness's metrics, beside ``eval``'s BM25, LLaRA and hybrid on the same
   collection and encoder (their corpus vectors come from the evaluation cache when present);
4. query latency p50 / p95 per mode at k=10, as ``llara-rag query -k 10`` retrieves (query encoding
   included; the collection and the lexical index are opened once).

The goal (issue #18) is each mode within ±0.005 nDCG@10 of ``eval``'s system. Known differences that
remain: Chroma's HNSW search is approximate where ``eval`` computes exact dot products; a document longer
than a chunk is split instead of truncated.

    python benchmarks/retrieval_paths.py [cranfield scifact] [--model smollm2] [--adapter DIR] [--workdir DIR]
                                         [--embed-file-names]

Writes benchmarks/results/retrieval_paths.{md,json}, keeping the rows of collections not measured this time
(same encoder); the work folder keeps each collection's database, so a rerun only indexes what is not
indexed yet.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from llara_rag.cli import main as cli
from llara_rag.encoding.adapter import DEFAULT
from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.evaluation import (
    DEPTH,
    Collection,
    EvaluationConfig,
    VectorCache,
    build_systems,
    evaluate_systems,
    load_collection,
    mean_scores,
)
from llara_rag.indexing.store import StoreConfig
from llara_rag.retrieval.fusion import MODES, Run
from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search

logger = logging.getLogger("retrieval_paths")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
COLLECTIONS = ("cranfield", "scifact")
SYSTEM_OF_MODE = {"lexical": "bm25", "dense": "llara", "hybrid": "hybrid"}
CHUNK_TOKENS = 512
CHUNKS_PER_QUERY = 2 * DEPTH
"""Chunks retrieved per query: enough for DEPTH documents when a few documents have two chunks."""
LATENCY_K = 10
GOAL = 0.005
SHOWN = ("nDCG@10", "Recall@100")
FILE_PREFIX = "doc-"
NAMING = {True: "chunks embedded with their file_name line", False: "--no-file-name"}
"""Rows measured before ``--no-file-name`` existed embedded the file name."""


def write_documents(collection: Collection, folder: Path) -> None:
    """One file per document, named after its (quoted) id, holding the text ``eval`` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, text in zip(collection.doc_ids, collection.doc_texts):
        path = folder / f"{FILE_PREFIX}{quote(doc_id, safe='')}.txt"
        if not path.exists():
            path.write_text(text, encoding="utf-8")


def document_of(file_name: str | None) -> str:
    return unquote(Path(file_name or "").stem.removeprefix(FILE_PREFIX))


def index_with_cli(docs: Path, store: StoreConfig, model: str, adapter: str, embed_file_names: bool) -> None:
    command = [
        "index",
        str(docs),
        "--db",
        str(store.path),
        "--collection",
        store.collection,
        "--model",
        model,
    ]
    command += ["--chunk-size", str(CHUNK_TOKENS), "--adapter", adapter]
    if not embed_file_names:  # --rechunk: a database indexed the other way is re-embedded, not refused
        command += ["--no-file-name", "--rechunk"]
    started = time.perf_counter()
    if cli(command) != 0:
        raise SystemExit(f"`llara-rag {' '.join(command)}` failed")
    logger.info("%s indexed in %.0f s", docs.parent.name, time.perf_counter() - started)


def query_path_run(store: StoreConfig, embed_model: LLaRAEmbedding, collection: Collection, mode: str) -> Run:
    """Each query as ``llara-rag query --mode MODE`` retrieves it, chunks folded into their documents."""
    retriever = open_retriever(store, embed_model, RetrievalConfig(mode=mode, top_k=CHUNKS_PER_QUERY))
    run: Run = {}
    for query_id, question in collection.queries.items():
        ranking: dict[str, float] = {}
        for hit in search(retriever, question):
            ranking.setdefault(document_of(hit.file_name), hit.score)
        run[query_id] = dict(list(ranking.items())[:DEPTH])
    return run


def latency(
    store: StoreConfig, embed_model: LLaRAEmbedding, questions: list[str], mode: str
) -> dict[str, float]:
    retriever = open_retriever(store, embed_model, RetrievalConfig(mode=mode, top_k=LATENCY_K))
    search(retriever, questions[0])  # warm-up: first-call allocations are not a query's cost
    seconds = []
    for question in questions:
        started = time.perf_counter()
        search(retriever, question)
        seconds.append(time.perf_counter() - started)
    return {
        "p50_ms": float(np.percentile(seconds, 50) * 1e3),
        "p95_ms": float(np.percentile(seconds, 95) * 1e3),
    }


def hybrid_parts(store: StoreConfig, embed_model: LLaRAEmbedding, questions: list[str]) -> dict[str, float]:
    """p50 ms of what a hybrid query spends, part by part: the query's encoding, the dense search at k=10
    (what dense mode asks Chroma) and at the hybrid's candidate depth, and the lexical search at that depth."""
    retriever = open_retriever(store, embed_model, RetrievalConfig(mode="hybrid", top_k=LATENCY_K))
    assert retriever.lexical is not None
    depth = min(retriever.config.candidates, retriever.collection.count())

    def dense(embedding: list[float], k: int) -> object:
        return retriever.collection.query(query_embeddings=[embedding], n_results=k, include=["distances"])

    parts: dict[str, list[float]] = {}

    def timed(part: str, work: Callable[..., Any], *arguments: Any) -> Any:
        started = time.perf_counter()
        result = work(*arguments)
        parts.setdefault(part, []).append(time.perf_counter() - started)
        return result

    for question in questions:
        embedding = timed("encode_query", embed_model.get_query_embedding, question)
        timed(f"dense_k{LATENCY_K}", dense, embedding, LATENCY_K)
        timed(f"dense_k{depth}", dense, embedding, depth)
        timed(f"lexical_k{depth}", retriever.lexical.search, question, depth)
    return {part: round(float(np.percentile(seconds, 50) * 1e3), 2) for part, seconds in parts.items()}


def measure(name: str, args: argparse.Namespace, embed_model: LLaRAEmbedding) -> dict:
    started = time.perf_counter()
    collection = load_collection(DATA / name)
    work = args.workdir / name
    write_documents(collection, work / "docs")
    store = StoreConfig(path=work / "db", collection=name)
    index_with_cli(work / "docs", store, args.model, args.adapter, args.embed_file_names)

    evaluation = EvaluationConfig(
        encoder=EncoderConfig(model=args.model, adapter=args.adapter), systems=("bm25", "llara", "hybrid")
    )
    measured = evaluate_systems(collection, build_systems(evaluation, VectorCache()))
    eval_metrics = {system.name: system.metrics for system in measured.systems}
    modes = {}
    for mode in MODES:
        scored = time.perf_counter()
        metrics = mean_scores(collection.qrels, query_path_run(store, embed_model, collection, mode))
        expected = eval_metrics[SYSTEM_OF_MODE[mode]]
        modes[mode] = {
            "query_path": metrics,
            "eval": expected,
            "eval_system": SYSTEM_OF_MODE[mode],
            "seconds": round(time.perf_counter() - scored, 1),
            "within_goal": abs(metrics["nDCG@10"] - expected["nDCG@10"]) <= GOAL,
            "latency_k10": latency(store, embed_model, list(collection.queries.values()), mode),
        }
        logger.info("%s %s: %s", name, mode, modes[mode])
    questions = list(collection.queries.values())
    return {
        "collection": name,
        "hybrid_parts_p50_ms": hybrid_parts(store, embed_model, questions),
        "documents": len(collection.doc_ids),
        "queries": len(collection.queries),
        "file_name_embedded": args.embed_file_names,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "modes": modes,
    }


def merged(results: list[dict], args: argparse.Namespace) -> list[dict]:
    """This run's collections replace their earlier rows; other collections' rows stay when they were
    measured with the same encoder and chunks (a collection can be measured in a sitting of its own)."""
    path = RESULTS / "retrieval_paths.json"
    if not path.is_file():
        return results
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if (earlier["model"], earlier["adapter"], earlier["chunk_tokens"]) != (
        args.model,
        args.adapter,
        CHUNK_TOKENS,
    ):
        return results
    fresh = {result["collection"] for result in results}
    return [result for result in earlier["results"] if result["collection"] not in fresh] + results


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    adapter = f" + adapter `{args.adapter}`"
    lines = [
        "# Retrieval paths: `llara-rag index` + `query` against `eval`",
        "",
        (
            f"`python benchmarks/retrieval_paths.py` on {platform.machine()}, model `{args.model}`{adapter}; "
            f"chunks of {CHUNK_TOKENS} tokens, a document scored as its best chunk. Goal: "
            f"each mode within ±{GOAL} nDCG@10 of `eval`'s system. Latency: one query as `llara-rag query -k "
            f"{LATENCY_K}` retrieves it, query encoding included."
        ),
        "",
    ]
    for result in results:
        lines += [
            (
                f"### {result['collection']} ({result['documents']} documents, {result['queries']} queries; "
                f"{result['minutes']} min; {NAMING[result.get('file_name_embedded', True)]})"
            ),
            "",
            "| mode | eval system | "
            + " | ".join(f"{metric} query / eval" for metric in SHOWN)
            + " | Δ nDCG@10 | within goal | p50 / p95 ms |",
            "|---|---|" + "---:|" * len(SHOWN) + "---:|---|---:|",
        ]
        for mode, row in result["modes"].items():
            cells = [f"{row['query_path'][metric]:.3f} / {row['eval'][metric]:.3f}" for metric in SHOWN]
            delta = row["query_path"]["nDCG@10"] - row["eval"]["nDCG@10"]
            speed = f"{row['latency_k10']['p50_ms']:.0f} / {row['latency_k10']['p95_ms']:.0f}"
            goal = "yes" if row["within_goal"] else "no"
            lines.append(
                f"| {mode} | {row['eval_system']} | {' | '.join(cells)} | {delta:+.4f} | {goal} | {speed} |"
            )
        if "hybrid_parts_p50_ms" in result:
            parts = ", ".join(f"{part} {ms:g}" for part, ms in result["hybrid_parts_p50_ms"].items())
            lines += ["", f"A hybrid query's parts (p50 ms): {parts}."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "collections", nargs="*", default=list(COLLECTIONS), help="folders under ../shared/data"
    )
    parser.add_argument("--model", default=EncoderConfig().model)
    parser.add_argument(
        "--adapter",
        default=DEFAULT,
        help="as `llara-rag index --adapter`: 'default' (shipped), 'none' or a folder",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "llara-rag-retrieval-paths"
    )
    parser.add_argument(
        "--embed-file-names",
        action="store_true",
        help="index as `llara-rag index` does by default: each chunk embedded with its 'file_name: doc-ID.txt' line",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    embed_model = LLaRAEmbedding(model_name=args.model, adapter=args.adapter)
    results = merged([measure(name, args, embed_model) for name in args.collections], args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval_paths.md").write_text(markdown(results, args), encoding="utf-8")
    payload = {"model": args.model, "adapter": args.adapter, "chunk_tokens": CHUNK_TOKENS, "results": results}
    (RESULTS / "retrieval_paths.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(markdown(results, args))


if __name__ == "__main__":
    main()
