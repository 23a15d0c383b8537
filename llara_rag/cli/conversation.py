"""`llara-rag chat` and `llara-rag serve`: a collection answered in the terminal or over HTTP."""

from __future__ import annotations

import argparse
import logging
import os

from llara_rag.cli.common import (
    add_generator_arguments,
    add_model_arguments,
    add_store_arguments,
    chat_config,
    embedding,
    generator_config,
    store_config,
)
from llara_rag.cli.flags import add_options, option_values, options_of

logger = logging.getLogger("llara_rag.cli")


def _quiet_chat_logs(args: argparse.Namespace) -> None:
    """No per-turn INFO lines nor loading bars between the answers, unless --verbose."""
    if not args.verbose:
        from transformers.utils.logging import disable_progress_bar

        logging.getLogger("llama_index").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request to an openai: endpoint
        disable_progress_bar()


def add_chat(sub: argparse._SubParsersAction, generated: bool) -> None:
    parser = sub.add_parser(
        "chat", help="chat in the terminal with an indexed collection: quoted answers, or an LLM's"
    )
    add_model_arguments(parser)
    if generated:
        add_store_arguments(parser)
        add_generator_arguments(parser)
    parser.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    from llara_rag.cli.session import open_chat_session
    from llara_rag.indexing.store import existing_collection

    _quiet_chat_logs(args)
    generator = generator_config(args)
    config = chat_config(args)
    store = store_config(args)
    collection = existing_collection(store)  # a missing one is named before the models load
    return open_chat_session(store, embedding(args, collection), generator, config).run()


def add_serve(sub: argparse._SubParsersAction, generated: bool) -> None:
    parser = sub.add_parser(
        "serve",
        help="an HTTP service: OpenAI-compatible embeddings, search and chat over a collection, and a chat "
        "page at / (needs the serve extra)",
    )
    add_model_arguments(parser, bulk=True)
    parser.add_argument(
        "--no-chat", action="store_true", help="serve embeddings and search, load no generator"
    )
    parser.add_argument(
        "--embeddings-only", action="store_true", help="serve /v1/embeddings alone: no collection, no chat"
    )
    if generated:
        from llara_rag.extras import require

        require("fastapi", "serve")  # before the service's settings import it
        from llara_rag.serving import API_KEY_ENV, ServiceConfig

        add_store_arguments(parser)
        add_generator_arguments(parser)
        add_options(parser, options_of(ServiceConfig))
        parser.add_argument(
            "--api-key",
            default=os.environ.get(API_KEY_ENV),
            help="key clients send as 'Authorization: Bearer KEY' on /v1/ routes; required to listen beyond "
            f"loopback (default: ${API_KEY_ENV}, else none)",
        )
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from llara_rag.extras import require

    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    from llara_rag.indexing.store import existing_collection
    from llara_rag.serving import ServiceConfig, create_app

    config = ServiceConfig(**option_values(args, options_of(ServiceConfig)), api_key=args.api_key or None)
    store = None if args.embeddings_only else store_config(args)
    collection = None if store is None else existing_collection(store)  # named before the models load
    chat_on = store is not None and not args.no_chat
    generator = generator_config(args) if chat_on else None
    chat = chat_config(args)
    embed_model = embedding(args, collection)
    llm = None
    if generator is not None:
        from llara_rag.chat.engine import answer_mode
        from llara_rag.chat.generator import load_generator

        _quiet_chat_logs(args)
        chat = chat.model_copy(update={"answer": answer_mode(chat, generator)})
        llm = load_generator(generator) if chat.answer == "generate" else None
    app = create_app(embed_model, config, store=store, llm=llm, chat=chat)
    logger.info("Serving %s on http://%s:%d (chat page at /)", embed_model.model_name, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.verbose else "info")
    return 0
