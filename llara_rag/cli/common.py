"""The option groups several commands share (model, store, retrieval, generator) and the configs they make."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING, Any, get_args

from llara_rag.cli.flags import add_options, option_values, options_of
from llara_rag.encoding.backbone import DEFAULT_MODEL
from llara_rag.encoding.precision import Precision

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from llara_rag.chat.engine import ChatConfig
    from llara_rag.chat.generator import GeneratorConfig
    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.encoding.encoder import EncoderConfig
    from llara_rag.indexing.store import StoreConfig
    from llara_rag.retrieval.retriever import RetrievalConfig

logger = logging.getLogger(__name__)

SERVER_ENV = "LLARA_RAG_CHROMA_SERVER"


def add_model_arguments(parser: argparse.ArgumentParser, *, bulk: bool = False) -> None:
    """The encoder's options; ``bulk``: the command encodes many texts in one process, so ``--precision``
    defaults to ``auto`` (whose int8 compiles at the first batch) rather than fp32 on a CPU."""
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"backbone (default: the embedded {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--adapter",
        default="default",
        help="a LoRA adapter directory from `llara-rag adapt`/`finetune`; 'none': the bare backbone "
        "(default: the adapter shipped for the default backbone)",
    )
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when present)")
    parser.add_argument(
        "--quantization",
        choices=("8bit", "4bit"),
        default=None,
        help="load the weights in 8 or 4 bits (bitsandbytes, CUDA only): a 7B model on a smaller GPU",
    )
    parser.add_argument(
        "--device-map", default=None, help="'auto' spreads a model too large for one GPU over all of them"
    )
    parser.add_argument(
        "--devices",
        type=_device_list,
        default=None,
        metavar="DEV,DEV,...",
        help="encode on several devices, one worker process each (e.g. cuda:0,cuda:1); same vectors as one",
    )
    parser.add_argument(
        "--lowercase",
        choices=("on", "off"),
        default=None,
        help="lower-case queries and passages before encoding (default: as the adapter was trained)",
    )
    parser.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="auto" if bulk else None,
        help="encode with fp32 or bf16 weights, or int8 (CPUs; compiled at the first batch); auto: the "
        "fastest this CPU was measured to run without moving retrieval quality, fp32 on a collection indexed at "
        "fp32. Vectors of every precision search each other's collections. (default: "
        + ("auto" if bulk else "fp32 on CPU, bf16 on GPU: a few texts do not repay int8's compilation")
        + ")",
    )


def _device_list(value: str) -> tuple[str, ...]:
    devices = tuple(device.strip() for device in value.split(",") if device.strip())
    if not devices:
        raise argparse.ArgumentTypeError(f"{value!r} names no device; pass e.g. cuda:0,cuda:1")
    return devices


def encoder_config(args: argparse.Namespace) -> EncoderConfig:
    from llara_rag.encoding.encoder import EncoderConfig

    return EncoderConfig(model=args.model, **_placement(args))


def _placement(args: argparse.Namespace) -> dict[str, Any]:
    """The adapter, its input case and where the weights go: named alike in EncoderConfig and LLaRAEmbedding."""
    return {
        "adapter": args.adapter,
        "lowercase": {"on": True, "off": False, None: None}[args.lowercase],
        "device": args.device,
        "devices": args.devices,
        "quantization": args.quantization,
        "device_map": args.device_map,
        "precision": args.precision,
    }


def embedding(args: argparse.Namespace, collection: Collection | None = None) -> LLaRAEmbedding:
    """The encoder the options name; ``auto`` against a ``collection`` indexed at fp32 (or bf16) runs fp32, so
    its new vectors and queries are of the precision its vectors are: int8 queries on fp32 vectors moved
    nDCG@10 by more than int8 on both sides did (docs/encoder.md)."""
    from llara_rag.encoding.embedding import LLaRAEmbedding

    placement = _placement(args)
    if args.precision == "auto" and collection is not None:
        from llara_rag.indexing.store import indexed_at_int8

        if indexed_at_int8(collection) is False and _auto_is_int8(args):
            logger.info(
                "Collection %r was indexed at fp32 (or bf16): encoding at fp32, as its vectors were",
                collection.name,
            )
            placement["precision"] = "fp32"
    return LLaRAEmbedding(model_name=args.model, **placement)


def _auto_is_int8(args: argparse.Namespace) -> bool:
    from llara_rag.encoding.precision import resolve_precision

    return resolve_precision("auto", args.device, args.devices) == "int8"


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    from llara_rag.indexing.store import StoreConfig

    add_options(parser, options_of(StoreConfig))
    parser.add_argument(
        "--server",
        default=os.environ.get(SERVER_ENV),
        help="a Chroma server URL such as http://localhost:8000 instead of --db "
        f"(default: ${SERVER_ENV}, else embedded)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an HTTP header for the server (repeatable)",
    )


def store_config(args: argparse.Namespace) -> StoreConfig:
    from llara_rag.errors import InvalidInputError
    from llara_rag.indexing.store import StoreConfig

    headers = dict(item.partition("=")[::2] for item in args.header)
    if any(not key or not value for key, value in headers.items()):
        raise InvalidInputError(f"--header takes KEY=VALUE, got {args.header}.")
    if args.server:
        return StoreConfig.from_url(args.server, collection=args.collection, headers=headers)
    return StoreConfig(**option_values(args, options_of(StoreConfig)))


def add_retrieval_arguments(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    from llara_rag.retrieval.retriever import RetrievalConfig

    add_options(parser, options_of(RetrievalConfig), **defaults)


def retrieval_config(
    args: argparse.Namespace, where: dict[str, str | int | float] | None = None
) -> RetrievalConfig:
    from llara_rag.retrieval.retriever import RetrievalConfig

    return RetrievalConfig(**option_values(args, options_of(RetrievalConfig)), where=where or {})


def add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    from llara_rag.chat.engine import ChatConfig
    from llara_rag.chat.generator import GeneratorConfig

    add_options(parser, options_of(GeneratorConfig))
    add_options(parser, options_of(ChatConfig))
    add_retrieval_arguments(parser, top_k=ChatConfig().retrieval.top_k)


def generator_config(args: argparse.Namespace) -> GeneratorConfig:
    from llara_rag.chat.generator import GeneratorConfig
    from llara_rag.settings import checked

    return checked(GeneratorConfig, **option_values(args, options_of(GeneratorConfig)), device=args.device)


def chat_config(args: argparse.Namespace) -> ChatConfig:
    from llara_rag.chat.engine import ChatConfig

    return ChatConfig(retrieval=retrieval_config(args), **option_values(args, options_of(ChatConfig)))
