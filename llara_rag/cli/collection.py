"""`llara-rag index` and `llara-rag query`: a folder into a pinned collection, and a question against it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from llara_rag.cli.common import (
    add_model_arguments,
    add_retrieval_arguments,
    add_store_arguments,
    embedding,
    encoder_config,
    retrieval_config,
    store_config,
)
from llara_rag.cli.flags import add_options, option_values, options_of


def add_index(sub: argparse._SubParsersAction, generated: bool) -> None:
    parser = sub.add_parser(
        "index", help="index a folder of documents into a Chroma collection (re-runs upsert)"
    )
    parser.add_argument("docs", help="the folder of documents")
    add_model_arguments(parser, bulk=True)
    if generated:
        from llara_rag.indexing.ingest import IngestConfig

        add_store_arguments(parser)
        add_options(parser, options_of(IngestConfig))
    parser.set_defaults(run=run_index)


def run_index(args: argparse.Namespace) -> int:
    from llara_rag.indexing.ingest import IngestConfig, check_before_loading, index_folder
    from llara_rag.indexing.store import find_collection

    config = IngestConfig(**option_values(args, options_of(IngestConfig)))
    store = store_config(args)
    check_before_loading(args.docs, store, config, encoder_config(args).passage_max_length)
    embed_model = embedding(args, find_collection(store))
    start = time.perf_counter()
    summary = index_folder(Path(args.docs), store, embed_model, config)
    print(summary.report())
    if summary.chunks_written:
        from llara_rag.encoding.precision import instruction_set

        seconds = time.perf_counter() - start
        device = embed_model.encoder.device.type
        where = f"{device} ({instruction_set()})" if device == "cpu" else device
        print(
            f"{seconds / summary.chunks_written:.2f} s per chunk written (reading, embedding, writing) at "
            f"{embed_model.encoder.precision} on {where}"
        )
    return 0


def add_query(sub: argparse._SubParsersAction, generated: bool) -> None:
    parser = sub.add_parser("query", help="the chunks of an indexed collection closest to a question")
    parser.add_argument("question")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata filter, e.g. file_name=a.md",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    add_model_arguments(parser)
    if generated:
        add_retrieval_arguments(parser)
        add_store_arguments(parser)
    parser.set_defaults(run=run_query)


def run_query(args: argparse.Namespace) -> int:
    from llara_rag.indexing.store import existing_collection, parse_where
    from llara_rag.retrieval.retriever import check_question, open_retriever, search, why_no_results

    check_question(args.question)
    retrieval = retrieval_config(args, parse_where(args.where))
    store = store_config(args)
    collection = existing_collection(store)  # a missing one is named before the model loads
    retriever = open_retriever(store, embedding(args, collection), retrieval)
    hits = search(retriever, args.question)
    if not hits:
        print(f"No results: {why_no_results(retriever)}", file=sys.stderr)
    for rank, hit in enumerate(hits, 1):
        if args.json:
            print(hit.model_dump_json())
        else:
            print(
                f"{hit.label(rank)}  found by {hit.describe_sides()}\n    {' '.join(hit.text.split())[:300]}"
            )
    return 0
