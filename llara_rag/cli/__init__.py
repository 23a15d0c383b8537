"""`llara-rag`: a thin command line over the library, one module per group of commands.

Options that set a library setting are generated from its field (:mod:`llara_rag.cli.flags`), and only
for the command being run: `llara-rag --help` imports neither torch nor LlamaIndex.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from llara_rag import __version__
from llara_rag.cli.collection import add_index, add_query
from llara_rag.cli.conversation import add_chat, add_serve
from llara_rag.cli.encode import add_embed, add_eval
from llara_rag.cli.training import add_adapt, add_finetune, add_push

COMMANDS: dict[str, Callable[[argparse._SubParsersAction, bool], None]] = {
    "embed": add_embed,
    "eval": add_eval,
    "index": add_index,
    "query": add_query,
    "adapt": add_adapt,
    "finetune": add_finetune,
    "chat": add_chat,
    "serve": add_serve,
    "push": add_push,
}
"""Each adds one subcommand and sets its ``run`` default; with True, also its generated options."""
RESUMABLE = {
    "index": "what was written is kept; run the same command again to index the rest",
    "adapt": "run the same command again to resume from the last checkpoint",
    "finetune": "run the same command again to resume from the last checkpoint",
}
"""What an interrupted command leaves, for the line it ends with."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line, as llara-rag's own: the usage is one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser, with the generated options of the command ``argv`` names (its first command word)."""
    parser = _Parser(
        prog="llara-rag",
        description="Search a folder of documents by meaning and by keywords, chat with it through a local "
        "LLM, and adapt the embedding model to your documents without labels, all on your own machine.",
        epilog='Start with `llara-rag index DOCS`, then `llara-rag query "a question"` or `llara-rag chat`; '
        "`llara-rag COMMAND -h` tells more.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((word for word in argv if word in COMMANDS), None)
    for name, add in COMMANDS.items():
        add(sub, name == chosen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from llara_rag.errors import LLaRAError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return args.run(args)
    except LLaRAError as error:
        print(f"llara-rag{_command(argv)}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        command = _command(argv)
        after = RESUMABLE.get(command.strip())
        print(f"llara-rag{command}: interrupted (Ctrl-C){f'; {after}' if after else ''}.", file=sys.stderr)
        return 130


def _command(argv: Sequence[str]) -> str:
    """`` index``: the command word of ``argv``, as error lines name it."""
    return next((f" {word}" for word in argv if word in COMMANDS), "")
