"""Store and ingestion speed: scifact through `index_folder`, then 100,000 vectors embedded vs on a server.

1. scifact's abstracts, one file each, through the whole ingestion (read, split in SmolLM2 tokens,
   embed, write, record): once with *precomputed* vectors — random unit vectors seeded by each chunk's
   text, so the store and pipeline are timed without the model — and once with live SmolLM2 encoding
   on a subset. Reports chunks/s written, query latency p50/p95 at k=10, peak RSS and a no-change re-run.
2. 100,000 random unit vectors of SmolLM2's dimension (576) written straight to the store, embedded
   and on a local `chroma run` server: write throughput and query p50/p95 at k=10.

Each phase runs in a fresh subprocess, so its peak RSS is its own.

    python benchmarks/store.py [--live-docs 300] [--synthetic 100000] [--phases scifact_live ...]

Results of each phase are merged into benchmarks/results/store.json as it finishes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
DIMENSION = 576
QUERIES = 200


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def percentiles(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(seconds, 50) * 1e3),
        "p95_ms": float(np.percentile(seconds, 95) * 1e3),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_scifact(folder: Path, count: int | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        for written, line in enumerate(handle):
            if count is not None and written == count:
                return written
            record = json.loads(line)
            (folder / f"{record['_id']}.txt").write_text(
                f"{record['title']}\n\n{record['text']}", encoding="utf-8"
            )
    return written + 1


def timed_queries(search, count: int) -> dict[str, float]:
    seconds = []
    for index in range(count):
        start = time.perf_counter()
        search(index)
        seconds.append(time.perf_counter() - start)
    return percentiles(seconds)


def scifact_phase(live: bool, documents: int | None, workdir: str) -> dict:
    """Whole ingestion of scifact abstracts, a query series, and a no-change re-run."""
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.indexing.ingest import index_folder
    from llara_rag.indexing.store import StoreConfig, open_store
    from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search

    class PrecomputedEmbedding(LLaRAEmbedding):
        """SmolLM2's identity and tokenizer, vectors looked up instead of computed (here: seeded by text)."""

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            seeds = [int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) for text in texts]
            return [unit_vectors(1, seed)[0].tolist() for seed in seeds]

    root = Path(workdir)
    files = write_scifact(root / "docs", documents)
    embed_model = (LLaRAEmbedding if live else PrecomputedEmbedding)()
    config = StoreConfig(path=root / "db", collection="scifact")
    start = time.perf_counter()
    summary = index_folder(root / "docs", config, embed_model)
    ingest_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rerun = index_folder(root / "docs", config, embed_model)
    rerun_seconds = time.perf_counter() - start
    assert rerun.chunks_written == 0 and len(rerun.unchanged) == files
    store = open_store(config, embed_model, create=False)
    queries = unit_vectors(QUERIES, seed=1)
    store_latency = timed_queries(
        lambda i: store.query(VectorStoreQuery(query_embedding=queries[i].tolist(), similarity_top_k=10)),
        QUERIES,
    )
    result = {
        "documents": files,
        "chunks": summary.chunks_written,
        "skipped": len(summary.skipped),
        "ingest_seconds": ingest_seconds,
        "chunks_per_s": summary.chunks_written / ingest_seconds,
        "rerun_unchanged_seconds": rerun_seconds,
        "query_store_only": store_latency,
    }
    if live:
        dense = open_retriever(config, embed_model, RetrievalConfig(mode="dense", top_k=10))
        titles = [
            path.read_text(encoding="utf-8").split("\n", 1)[0] for path in sorted((root / "docs").iterdir())
        ]
        result["query_with_encoding"] = timed_queries(lambda i: search(dense, titles[i % len(titles)]), 50)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def synthetic_phase(server: bool, count: int, workdir: str) -> dict:
    """``count`` vectors written in batches the client accepts, then ``QUERIES`` top-10 queries."""
    import contextlib

    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from llara_rag.indexing.store import ModelIdentity, StoreConfig, open_store
    from llara_rag.testing import chroma_server

    identity = ModelIdentity(fingerprint="synthetic-576", dimension=DIMENSION, model="synthetic")
    vectors = unit_vectors(count, seed=0)
    with chroma_server(Path(workdir) / "server") if server else contextlib.nullcontext() as url:
        config = (
            StoreConfig.from_url(url, collection="synthetic")
            if url
            else StoreConfig(path=Path(workdir) / "db")
        )
        store = open_store(config, identity)
        write_seconds = 0.0
        for first in range(0, count, store.max_batch_size):
            nodes = [
                TextNode(
                    id_=f"n{i}", text=f"chunk {i}", metadata={"group": i % 10}, embedding=vectors[i].tolist()
                )
                for i in range(first, min(first + store.max_batch_size, count))
            ]
            start = time.perf_counter()
            store.add(nodes)
            write_seconds += time.perf_counter() - start
        assert store.collection.count() == count
        queries = unit_vectors(QUERIES, seed=1)
        latency = timed_queries(
            lambda i: store.query(VectorStoreQuery(query_embedding=queries[i].tolist(), similarity_top_k=10)),
            QUERIES,
        )
    return {
        "vectors": count,
        "write_batch": store.max_batch_size,
        "write_seconds": write_seconds,
        "vectors_per_s": count / write_seconds,
        "query": latency,
        "client_peak_rss_mb": peak_rss_mb(),
    }


def in_subprocess(function, *args: object) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            return pool.apply(function, (*args, workdir))


PHASES = {
    "scifact_precomputed": lambda args: (scifact_phase, False, None),
    "scifact_live": lambda args: (scifact_phase, True, args.live_docs),
    "synthetic_embedded": lambda args: (synthetic_phase, False, args.synthetic),
    "synthetic_server": lambda args: (synthetic_phase, True, args.synthetic),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--live-docs", type=int, default=300, help="abstracts ingested with live encoding")
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--phases", nargs="+", choices=list(PHASES), default=list(PHASES))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "store.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    for name in args.phases:
        result[name] = in_subprocess(*PHASES[name](args))
        path.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        "# Store and ingestion (2 CPU cores shared with other jobs, chromadb 1.5.9)",
        "",
        "## scifact through `index_folder` (256-token chunks, SmolLM2 tokenizer)",
        "",
        "| run | docs | chunks | chunks/s | no-change re-run (s) | store query p50 / p95 (ms, k=10) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "scifact_precomputed": "precomputed vectors (random unit, seeded by chunk text)",
        "scifact_live": "live SmolLM2 encoding",
    }
    for name, label in labels.items():
        if phase := result.get(name):
            rows.append(
                f"| {label} | {phase['documents']} | {phase['chunks']} | {phase['chunks_per_s']:.1f} | "
                f"{phase['rerun_unchanged_seconds']:.1f} | {phase['query_store_only']['p50_ms']:.1f} / "
                f"{phase['query_store_only']['p95_ms']:.1f} | {phase['peak_rss_mb']:.0f} |"
            )
    if "scifact_live" in result:
        encoded = result["scifact_live"]["query_with_encoding"]
        rows += [
            "",
            (
                f"Query including SmolLM2 query encoding (live index): p50 {encoded['p50_ms']:.0f} ms, "
                f"p95 {encoded['p95_ms']:.0f} ms."
            ),
        ]
    rows += [
        "",
        f"## Random unit vectors, {DIMENSION}-d, written straight to the store",
        "",
        "| store | vectors | write batch | vectors/s written | query p50 / p95 (ms, k=10) | client peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("embedded", "server"):
        if phase := result.get(f"synthetic_{name}"):
            rows.append(
                f"| {name} | {phase['vectors']:,} | {phase['write_batch']} | {phase['vectors_per_s']:.0f} | "
                f"{phase['query']['p50_ms']:.1f} / {phase['query']['p95_ms']:.1f} | {phase['client_peak_rss_mb']:.0f} |"
            )
    (RESULTS / "store.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
