"""`llara-rag embed` and `llara-rag eval`: texts to vectors, and retrieval measured on BEIR folders."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from llara_rag.cli.common import add_model_arguments, encoder_config


def add_embed(sub: argparse._SubParsersAction, generated: bool) -> None:
    parser = sub.add_parser(
        "embed", help="embed texts (one per line on stdin, or as arguments) as JSON lines"
    )
    parser.add_argument("texts", nargs="*", help="texts to embed (default: read lines from stdin)")
    parser.add_argument("--query", action="store_true", help="embed as queries (EBAR prompt), not passages")
    add_model_arguments(parser, bulk=True)
    parser.set_defaults(run=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from llara_rag.encoding.encoder import get_encoder

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    encoder = get_encoder(encoder_config(args))
    vectors = encoder.encode(texts, "query" if args.query else "passage")
    for text, vector in zip(texts, vectors):
        print(json.dumps({"text": text, "embedding": [round(float(x), 6) for x in vector]}))
    logging.getLogger(__name__).info("Embedded %d texts with %s", len(texts), encoder.describe())
    return 0


def _baselines(value: str) -> tuple[str, ...]:
    from typing import get_args

    from llara_rag.evaluation.harness import SystemName

    names = tuple(name.strip() for name in value.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in get_args(SystemName)]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown system {', '.join(unknown)}; choose from {', '.join(get_args(SystemName))} or 'none'"
        )
    return names


def add_eval(sub: argparse._SubParsersAction, generated: bool) -> None:
    parser = sub.add_parser(
        "eval", help="measure retrieval (nDCG@10, Recall@100, MRR@10, MAP@100) on BEIR-format folders"
    )
    parser.add_argument(
        "datasets",
        nargs="+",
        metavar="DATASET_DIR",
        help="folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv",
    )
    add_model_arguments(parser, bulk=True)
    parser.add_argument(
        "--baselines",
        type=_baselines,
        default=("bm25", "minilm", "minilm-hybrid", "hybrid"),
        help="comma-separated systems to report beside llara: bm25, minilm, minilm-hybrid (bm25 and minilm "
        "fused as the hybrid fuses llara), raw-llm (mean-pooled backbone; encodes the corpus again), "
        "llara-base (the model without --adapter), hybrid (bm25 and llara, z-scores summed); "
        "'none' for llara alone (default: bm25,minilm,minilm-hybrid,hybrid)",
    )
    parser.add_argument("--split", default="test", help="qrels/<split>.tsv to score against (default: test)")
    parser.add_argument(
        "--output", default="llara-eval", help="folder for <collection>.json/.md/.png (default: ./llara-eval)"
    )
    parser.add_argument("--cache-dir", default=None, help="corpus vector cache (default: the user cache)")
    parser.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from typing import get_args

    from llara_rag.evaluation import EvaluationConfig, evaluate, markdown_table
    from llara_rag.evaluation.harness import SystemName

    config = EvaluationConfig(
        encoder=encoder_config(args),
        systems=tuple(name for name in get_args(SystemName) if name == "llara" or name in args.baselines),
        split=args.split,
        cache_dir=args.cache_dir,
        output_dir=args.output,
    )
    for dataset in args.datasets:
        result = evaluate(dataset, config)
        print(markdown_table(result))
        print(f"Best nDCG@10 on {result.collection}: {result.best().label}\n")
    return 0
