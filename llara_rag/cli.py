"""`llara-rag`: a thin command line over the library; heavy imports happen inside each command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from llara_rag.backbone import DEFAULT_MODEL



def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"backbone (default: the embedded {DEFAULT_MODEL})")
    parser.add_argument("--adapter", default=None, help="a LoRA adapter directory written by `llara-rag adapt`")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when present)")


def _encoder_config(args: argparse.Namespace):  # noqa: ANN202 - keeps pydantic out of --help's import path
    from llara_rag.encoder import EncoderConfig

    return EncoderConfig(model=args.model, adapter=args.adapter, device=args.device)


def _add_embed(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("embed", help="embed texts (one per line on stdin, or as arguments) as JSON lines")
    parser.add_argument("texts", nargs="*", help="texts to embed (default: read lines from stdin)")
    parser.add_argument("--query", action="store_true", help="embed as queries (EBAR prompt), not passages")
    _add_model_arguments(parser)
    parser.set_defaults(run=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from llara_rag.encoder import get_encoder

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    encoder = get_encoder(_encoder_config(args))
    vectors = encoder.encode(texts, "query" if args.query else "passage")
    for text, vector in zip(texts, vectors):
        print(json.dumps({"text": text, "embedding": [round(float(x), 6) for x in vector]}))
    logging.getLogger(__name__).info("Embedded %d texts with %s", len(texts), encoder.describe())
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_embed]
"""Each adds one subcommand and sets its ``run`` default."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llara-rag", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from llara_rag.errors import LLaRAError

    try:
        return args.run(args)
    except LLaRAError as error:
        print(f"llara-rag {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
