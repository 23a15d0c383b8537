"""`llara-rag`: a thin command line over the library; heavy imports happen inside each command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from llara_rag import __version__
from llara_rag.backbone import DEFAULT_MODEL
from llara_rag.documents import DEFAULT_MAX_FILE_BYTES
from llara_rag.fusion import DEFAULT_ALPHA, DEFAULT_MODE, MEASURED_WITH_DEFAULT_ENCODER, MODES

if TYPE_CHECKING:
    from llara_rag.chat import ChatConfig
    from llara_rag.embedding import LLaRAEmbedding
    from llara_rag.encoder import EncoderConfig
    from llara_rag.evaluation import RetrievalEvaluator
    from llara_rag.generator import GeneratorConfig
    from llara_rag.retrieval import RetrievalConfig
    from llara_rag.store import StoreConfig

logger = logging.getLogger("llara_rag.cli")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
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


def _device_list(value: str) -> tuple[str, ...]:
    devices = tuple(device.strip() for device in value.split(",") if device.strip())
    if not devices:
        raise argparse.ArgumentTypeError(f"{value!r} names no device; pass e.g. cuda:0,cuda:1")
    return devices


def _encoder_config(args: argparse.Namespace) -> EncoderConfig:
    from llara_rag.encoder import EncoderConfig

    return EncoderConfig(model=args.model, **_placement(args))


def _placement(args: argparse.Namespace) -> dict[str, Any]:
    """The adapter and where the weights go: named alike in EncoderConfig and LLaRAEmbedding."""
    return {
        "adapter": args.adapter,
        "device": args.device,
        "devices": args.devices,
        "quantization": args.quantization,
        "device_map": args.device_map,
    }


def _add_embed(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "embed", help="embed texts (one per line on stdin, or as arguments) as JSON lines"
    )
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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", help="measure retrieval (nDCG@10, Recall@100, MRR@10, MAP@100) on BEIR-format folders"
    )
    parser.add_argument(
        "datasets",
        nargs="+",
        metavar="DATASET_DIR",
        help="folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv",
    )
    _add_model_arguments(parser)
    parser.add_argument(
        "--baselines",
        type=_baselines,
        default=("bm25", "minilm", "hybrid"),
        help="comma-separated systems to report beside llara: bm25, minilm, raw-llm (mean-pooled backbone; "
        "encodes the corpus again), llara-base (the model without --adapter), "
        "hybrid (bm25 and llara, z-scores summed); "
        "'none' for llara alone (default: bm25,minilm,hybrid)",
    )
    parser.add_argument("--split", default="test", help="qrels/<split>.tsv to score against (default: test)")
    parser.add_argument(
        "--output", default="llara-eval", help="folder for <collection>.json/.md/.png (default: ./llara-eval)"
    )
    parser.add_argument("--cache-dir", default=None, help="corpus vector cache (default: the user cache)")
    parser.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from typing import get_args

    from llara_rag.evaluation import EvaluationConfig, evaluate, markdown_table
    from llara_rag.evaluation.harness import SystemName

    config = EvaluationConfig(
        encoder=_encoder_config(args),
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


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", default="llara-db", help="folder of the embedded Chroma database (default: llara-db)"
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("LLARA_RAG_CHROMA_SERVER"),
        help="a Chroma server URL such as http://localhost:8000 instead of --db "
        "(default: $LLARA_RAG_CHROMA_SERVER, else embedded)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an HTTP header for the server (repeatable)",
    )
    parser.add_argument("--collection", default="llara", help="collection name (default: llara)")


def _store_config(args: argparse.Namespace) -> StoreConfig:
    from llara_rag.errors import InvalidInputError
    from llara_rag.store import StoreConfig

    headers = dict(item.partition("=")[::2] for item in args.header)
    if any(not key or not value for key, value in headers.items()):
        raise InvalidInputError(f"--header takes KEY=VALUE, got {args.header}.")
    if args.server:
        return StoreConfig.from_url(args.server, collection=args.collection, headers=headers)
    return StoreConfig(path=args.db, collection=args.collection)


def _embedding(args: argparse.Namespace) -> LLaRAEmbedding:
    from llara_rag.embedding import LLaRAEmbedding

    return LLaRAEmbedding(model_name=args.model, **_placement(args))


def _add_index(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "index", help="index a folder of documents into a Chroma collection (re-runs upsert)"
    )
    parser.add_argument("docs", help="the folder of documents")
    _add_store_arguments(parser)
    _add_model_arguments(parser)
    parser.add_argument("--chunk-size", type=int, default=256, help="encoder tokens per chunk (default: 256)")
    parser.add_argument(
        "--chunk-overlap",
        type=int,
        default=32,
        help="tokens shared by neighbouring chunks, fewer than --chunk-size (default: 32)",
    )
    parser.add_argument(
        "--rechunk",
        action="store_true",
        help="accept chunk settings other than the collection's: every document is re-split and embedded "
        "again",
    )
    parser.add_argument(
        "--max-file-mb",
        type=float,
        default=DEFAULT_MAX_FILE_BYTES / 1e6,
        help="skip files larger than this many MB (default: 5; 5 MB of text is about 5,500 chunks, some 40 "
        "minutes on a 2-core CPU)",
    )
    parser.add_argument(
        "--delete-missing", action="store_true", help="remove documents whose files are gone from the folder"
    )
    parser.set_defaults(run=_run_index)


def _run_index(args: argparse.Namespace) -> int:
    from llara_rag.ingest import IngestConfig, check_before_loading, index_folder

    config = IngestConfig(
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
        max_file_bytes=round(args.max_file_mb * 1_000_000),
        delete_missing=args.delete_missing,
        rechunk=args.rechunk,
    )
    store = _store_config(args)
    check_before_loading(args.docs, store, config, _encoder_config(args).passage_max_length)
    summary = index_folder(Path(args.docs), store, _embedding(args), config)
    print(summary.report())
    return 0


def _add_query(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("query", help="the chunks of an indexed collection closest to a question")
    parser.add_argument("question")
    parser.add_argument("-k", type=int, default=5, help="chunks to return (default: 5)")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata filter, e.g. file_name=a.md",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    _add_retrieval_arguments(parser)
    _add_store_arguments(parser)
    _add_model_arguments(parser)
    parser.set_defaults(run=_run_query)


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return number


def _add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=DEFAULT_MODE,
        help="where chunks come from: lexical (BM25 over the collection's lexical index, as `eval` scores "
        "BM25), dense (LLaRA vectors in Chroma) or hybrid (both, z-normalised scores summed as in `eval`'s "
        f"hybrid). Default: {DEFAULT_MODE}, the best measured, {MEASURED_WITH_DEFAULT_ENCODER}",
    )
    parser.add_argument(
        "--alpha",
        type=_fraction,
        default=DEFAULT_ALPHA,
        help="the dense side's weight in the hybrid, 0 to 1; BM25 gets the rest "
        f"(default {DEFAULT_ALPHA}: equal weights, as `eval` measures the hybrid)",
    )


def _retrieval_config(
    args: argparse.Namespace, where: dict[str, str | int | float] | None = None
) -> RetrievalConfig:
    from llara_rag.retrieval import RetrievalConfig

    return RetrievalConfig(mode=args.mode, alpha=args.alpha, top_k=args.k, where=where or {})


def _run_query(args: argparse.Namespace) -> int:
    from llara_rag.retrieval import check_question, open_retriever, search, why_no_results
    from llara_rag.store import existing_collection, parse_where

    check_question(args.question)
    retrieval = _retrieval_config(args, parse_where(args.where))
    store = _store_config(args)
    existing_collection(store)  # a missing database or collection is named before the model loads
    retriever = open_retriever(store, _embedding(args), retrieval)
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


def _add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    examples: str,
    learning_rate: float,
    batch_size: int,
    special_tokens_lr_scale: float = 1.0,
) -> None:
    """The Trainer flags `adapt` and `finetune` share; ``examples`` names what one batch row holds."""
    group = parser.add_argument_group("training")
    group.add_argument(
        "--max-steps", type=int, default=-1, help="optimizer steps (default: --epochs decides)"
    )
    group.add_argument("--epochs", type=float, default=1.0, help=f"passes over the {examples} (default 1)")
    group.add_argument(
        "--lr", type=float, default=learning_rate, help="peak learning rate (default %(default)s)"
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"{examples} per step and device (default %(default)s)",
    )
    group.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    group.add_argument(
        "--special-tokens-lr-scale",
        type=float,
        default=special_tokens_lr_scale,
        help="learning rate of the <s1>..<s16> rows as a multiple of --lr (default %(default)s)",
    )
    group.add_argument("--lora-r", type=int, default=16, help="LoRA rank of a fresh adapter (default 16)")
    group.add_argument(
        "--lora-alpha", type=int, default=32, help="LoRA alpha of a fresh adapter (default 32)"
    )
    group.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    group.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default 50)")
    group.add_argument("--logging-steps", type=int, default=10, help="log losses every N steps (default 10)")
    group.add_argument("--checkpoints", default=None, help="checkpoint folder (default: OUTPUT.checkpoints)")
    group.add_argument(
        "--restart", action="store_true", help="ignore existing checkpoints instead of resuming"
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an adapter already at --output that was trained with other settings",
    )
    group.add_argument("--deepspeed", default=None, help="a DeepSpeed config JSON (multi-GPU runs)")
    group.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPUs)")
    group.add_argument(
        "--seed", type=int, default=42, help="seed of sampling and initialisation (default 42)"
    )
    group.add_argument(
        "--report-to",
        default="none",
        help="where the Trainer also logs: tensorboard, wandb, mlflow, ... comma-separated (default: none)",
    )
    evaluation = parser.add_argument_group("retrieval evaluation during training")
    evaluation.add_argument(
        "--eval-data",
        default=None,
        metavar="BEIR_DIR",
        help="a labelled collection whose nDCG@10 and Recall@100 are logged as training goes (scored, never "
        "trained on)",
    )
    evaluation.add_argument(
        "--eval-steps", type=int, default=None, help="evaluate every N steps (default: --save-steps)"
    )
    evaluation.add_argument(
        "--eval-split", default="test", help="qrels/<split>.tsv of --eval-data to score (default: test)"
    )
    evaluation.add_argument(
        "--eval-queries", type=int, default=None, help="score only the first N queries (default: all)"
    )


def _training_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``AdapterArguments`` fields from `_add_training_arguments`' flags, --output and --base."""
    return {
        "output_dir": args.checkpoints or f"{args.output.rstrip('/')}.checkpoints",
        "model": args.model,
        "max_steps": args.max_steps,
        "num_train_epochs": args.epochs,
        "learning_rate": args.lr,
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": args.grad_accum,
        "special_tokens_lr_scale": args.special_tokens_lr_scale,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "activation_checkpointing": args.gradient_checkpointing,
        "save_steps": args.save_steps,
        "logging_steps": args.logging_steps,
        "deepspeed": args.deepspeed,
        "bf16": args.bf16,
        "seed": args.seed,
        "report_to": args.report_to.split(","),
    }


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """How `adapt` and `finetune` run, beside what they train: resume, overwrite, evaluate as they go."""
    return {"resume": not args.restart, "overwrite": args.overwrite, "evaluator": _evaluator(args)}


def _evaluator(args: argparse.Namespace) -> RetrievalEvaluator | None:
    """The ``--eval-data`` collection, read before training starts so a wrong folder fails at once."""
    if args.eval_data is None:
        return None
    from llara_rag.errors import InvalidInputError
    from llara_rag.evaluation import RetrievalEvaluator

    every = args.eval_steps or args.save_steps
    if every <= 0:
        raise InvalidInputError(f"--eval-steps {every}: must be a positive number of steps; pass e.g. 50.")
    return RetrievalEvaluator(
        args.eval_data, every=every, split=args.eval_split, max_queries=args.eval_queries
    )


def _print_adapter(adapter: Path, training: dict[str, Any], model: str) -> None:
    stages = training.get("stages", {"training": training})
    steps = ", ".join(f"{name} {record['steps']} steps" for name, record in stages.items())
    print(f"Adapter written to {adapter} ({steps}, {training['seconds']:.0f} s)")
    print(f"Use it with: llara-rag embed --model {model} --adapter {adapter} ...")


def _add_adapt(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "adapt",
        help="adapt the embedder to your documents, without labels (LLaRA EBAE/EBAR, then contrastive pairs)",
        description="Trains a LoRA adapter on DOCS (a folder of txt/md/html/pdf/docx, a .jsonl file or a BEIR "
        "folder) and writes it to --output. Rerun the same command to resume after an interruption. "
        "On many GPUs: torchrun --nproc-per-node 8 $(which llara-rag) adapt DOCS --output DIR [--deepspeed ds.json].",
    )
    parser.add_argument(
        "docs", help="a folder of documents, a .jsonl file with a 'text' field, or a BEIR folder"
    )
    parser.add_argument("--output", required=True, help="the adapter directory to write")
    parser.add_argument("--base", "--model", dest="model", default=DEFAULT_MODEL, help="backbone to adapt")
    parser.add_argument(
        "--adapter",
        default=None,
        help="an adapter to keep training: 'default' (the one shipped for the default backbone) or a "
        "directory (default: a fresh LoRA on the bare backbone)",
    )
    parser.add_argument("--window", type=int, default=128, help="tokens per window (default 128)")
    parser.add_argument("--lm-weight", type=float, default=1.0, help="weight of the LM loss (default 1)")
    parser.add_argument("--bow-weight", type=float, default=1.0, help="weight of (EBAE+EBAR)/2 (default 1)")
    parser.add_argument(
        "--keep-stopwords", action="store_true", help="keep stop words in bag-of-words targets"
    )
    parser.add_argument(
        "--target-weighting",
        choices=("uniform", "idf"),
        default="uniform",
        help="bag-of-words targets count equally, or by their IDF over the windows (default uniform)",
    )
    parser.add_argument(
        "--allow-collapse", action="store_true", help="only warn when the embeddings collapse"
    )
    parser.add_argument(
        "--whitening-dims",
        type=int,
        default=-1,
        help="dimensions kept by the domain whitening fitted after training (default: a quarter of the "
        "hidden size after --stages ebae-ebar alone, none after the contrastive stage, where it measured "
        "worse; 0: no whitening)",
    )
    _add_training_arguments(parser, examples="windows", learning_rate=2e-4, batch_size=8)
    stage = parser.add_argument_group("stages")
    stage.add_argument(
        "--stages",
        default="ebae-ebar,contrastive",
        help="stages to run, in order (default: ebae-ebar,contrastive; either alone is allowed)",
    )
    stage.add_argument(
        "--pair-maker",
        choices=("ict", "crop", "next", "title"),
        default="ict",
        help="contrastive pairs from the documents: ict (a sentence against the rest of its passage), crop "
        "(two random spans), next (a window against the next one), title (first line against the text) "
        "(default: ict)",
    )
    stage.add_argument(
        "--contrastive-steps", type=int, default=-1, help="contrastive steps (default: --contrastive-epochs)"
    )
    stage.add_argument(
        "--contrastive-epochs", type=float, default=1.0, help="contrastive passes over the pairs (default 1)"
    )
    stage.add_argument(
        "--contrastive-lr", type=float, default=6e-4, help="contrastive learning rate (default 6e-4)"
    )
    stage.add_argument(
        "--contrastive-batch-size", type=int, default=64, help="pairs a contrastive step (default 64)"
    )
    stage.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature (default 0.05)")
    _add_chunk_tokens(stage)
    parser.set_defaults(run=_run_adapt)


def _add_chunk_tokens(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    group.add_argument(
        "--chunk-tokens",
        type=int,
        default=None,
        help="tokens embedded with a graph at a time in contrastive training: bounds memory (about 2.4 MB a "
        "token for SmolLM2) whatever the batch size (default: 2048, a peak under 8 GB at 64 pairs a step; "
        "0: the whole batch at once)",
    )


def _chunk_tokens(args: argparse.Namespace) -> dict[str, int]:
    """--chunk-tokens when given; otherwise the library's default applies."""
    return {} if args.chunk_tokens is None else {"chunk_tokens": args.chunk_tokens}


def _run_adapt(args: argparse.Namespace) -> int:
    from llara_rag.adaptation import AdaptationArguments, adapt

    training = AdaptationArguments(
        **_training_kwargs(args),
        start_adapter=args.adapter,
        window_tokens=args.window,
        lm_weight=args.lm_weight,
        bow_weight=args.bow_weight,
        remove_stopwords=not args.keep_stopwords,
        target_weighting=args.target_weighting,
        stop_on_collapse=not args.allow_collapse,
        whitening_dims=args.whitening_dims,
        stages=args.stages,
        pair_maker=args.pair_maker,
        contrastive_max_steps=args.contrastive_steps,
        contrastive_epochs=args.contrastive_epochs,
        contrastive_learning_rate=args.contrastive_lr,
        contrastive_batch_size=args.contrastive_batch_size,
        temperature=args.temperature,
        **_chunk_tokens(args),
    )
    result = adapt(args.docs, args.output, training, **_run_options(args))
    _print_adapter(result.adapter, result.training, args.model)
    return 0


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "finetune",
        help="fine-tune the embedder on labelled queries (contrastive, with mined hard negatives)",
        description="Trains a LoRA adapter with InfoNCE on PAIRS (a JSONL file of {query, pos, neg} or a BEIR folder, "
        "whose --split qrels are read and nothing else) and writes it to --output. --adapter continues training an "
        "adapter from `llara-rag adapt`. Rerun the same command to resume. On many GPUs: torchrun --nproc-per-node 8 "
        "$(which llara-rag) finetune PAIRS --output DIR (passages of all devices serve as negatives).",
    )
    parser.add_argument(
        "pairs", help='a .jsonl file ({"query", "pos": [...], "neg": [...]}) or a BEIR folder'
    )
    parser.add_argument("--output", required=True, help="the adapter directory to write")
    parser.add_argument(
        "--adapter",
        default=None,
        help="an adapter to continue from: 'default' (the shipped one) or a directory, e.g. `llara-rag adapt`'s",
    )
    parser.add_argument(
        "--base", "--model", dest="model", default=DEFAULT_MODEL, help="backbone to fine-tune"
    )
    parser.add_argument(
        "--split", default="train", help="BEIR qrels/<split>.tsv to train on (default: train)"
    )
    parser.add_argument("--negatives", type=int, default=3, help="hard negatives per query (default 3)")
    parser.add_argument(
        "--miner",
        choices=("bm25", "dense", "none"),
        default="bm25",
        help="rank candidates with bm25, the starting encoder (dense), or use given negatives only",
    )
    parser.add_argument("--skip-top", type=int, default=10, help="top ranks never mined (default 10)")
    parser.add_argument("--mine-depth", type=int, default=100, help="deepest rank mined (default 100)")
    parser.add_argument("--temperature", type=float, default=0.01, help="InfoNCE temperature (default 0.01)")
    parser.add_argument("--query-max-length", type=int, default=64, help="query text tokens (default 64)")
    parser.add_argument(
        "--passage-max-length", type=int, default=160, help="passage text tokens (default 160)"
    )
    parser.add_argument(
        "--no-cross-device", action="store_true", help="use only this device's in-batch negatives"
    )
    _add_chunk_tokens(parser)
    _add_training_arguments(parser, examples="queries", learning_rate=1e-4, batch_size=64)
    parser.set_defaults(run=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> int:
    from llara_rag.adaptation.contrastive import ContrastiveArguments, finetune

    training = ContrastiveArguments(
        **_training_kwargs(args),
        start_adapter=args.adapter,
        split=args.split,
        negatives=args.negatives,
        miner=args.miner,
        skip_top=args.skip_top,
        mine_depth=args.mine_depth,
        temperature=args.temperature,
        query_max_length=args.query_max_length,
        passage_max_length=args.passage_max_length,
        cross_device_negatives=not args.no_cross_device,
        **_chunk_tokens(args),
    )
    result = finetune(args.pairs, args.output, training, **_run_options(args))
    if result.data:
        print(result.data.describe())
    _print_adapter(result.adapter, result.training, args.model)
    return 0


def _add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--generator",
        default=DEFAULT_MODEL,
        help=f"chat model that writes the answers: alias, .gguf, folder or Hub id (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, help="longest answer in tokens (default: 256)"
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily (default: 0)")
    parser.add_argument("-k", type=int, default=3, help="chunks retrieved per question (default: 3)")
    parser.add_argument(
        "--condense",
        action="store_true",
        help="let the generator rewrite each follow-up into a standalone question before retrieving (off by "
        "default: the embedded 135M generator rewrites badly; worth it with a larger one)",
    )
    _add_retrieval_arguments(parser)


def _generator_config(args: argparse.Namespace) -> GeneratorConfig:
    from llara_rag.generator import GeneratorConfig
    from llara_rag.validation import checked

    return checked(
        GeneratorConfig,
        model=args.generator,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        device=args.device,
    )


def _chat_config(args: argparse.Namespace) -> ChatConfig:
    from llara_rag.chat import ChatConfig

    return ChatConfig(retrieval=_retrieval_config(args), condense_questions=args.condense)


def _quiet_chat_logs(args: argparse.Namespace) -> None:
    """No per-turn INFO lines nor loading bars between the answers, unless --verbose."""
    if not args.verbose:
        from transformers.utils.logging import disable_progress_bar

        logging.getLogger("llama_index").setLevel(logging.WARNING)
        disable_progress_bar()


def _add_chat(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "chat", help="chat in the terminal with an indexed collection, answered by a local LLM"
    )
    _add_store_arguments(parser)
    _add_model_arguments(parser)
    _add_generator_arguments(parser)
    parser.set_defaults(run=_run_chat)


def _run_chat(args: argparse.Namespace) -> int:
    from llara_rag.chat import open_chat_session
    from llara_rag.store import existing_collection

    _quiet_chat_logs(args)
    generator = _generator_config(args)
    config = _chat_config(args)
    store = _store_config(args)
    existing_collection(store)  # a missing database or collection is named before the models load
    return open_chat_session(store, _embedding(args), generator, config).run()


def _add_serve(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="an HTTP service: OpenAI-compatible embeddings, search and chat over a collection, and a chat "
        "page at / (needs the serve extra)",
    )
    _add_store_arguments(parser)
    _add_model_arguments(parser)
    _add_generator_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LLARA_RAG_API_KEY"),
        help="key clients send as 'Authorization: Bearer KEY' on /v1/ routes; required to listen beyond "
        "loopback (default: $LLARA_RAG_API_KEY, else none)",
    )
    parser.add_argument(
        "--max-texts", type=int, default=256, help="texts in one embeddings request (default: 256)"
    )
    parser.add_argument(
        "--max-chars",
        type=int,
        default=32_000,
        help="characters in one text, question or message (default: 32000)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=50.0,
        help="longest wait of an embeddings request for others to share its encoder call; a tenth of the last "
        "call when that is shorter (default: 50)",
    )
    parser.add_argument(
        "--no-chat", action="store_true", help="serve embeddings and search, load no generator"
    )
    parser.add_argument(
        "--embeddings-only", action="store_true", help="serve /v1/embeddings alone: no collection, no chat"
    )
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from llara_rag.extras import require

    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    from llara_rag.serving import ServiceConfig, create_app
    from llara_rag.store import existing_collection

    config = ServiceConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key or None,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        batch_wait_ms=args.batch_wait_ms,
    )
    store = None if args.embeddings_only else _store_config(args)
    if store is not None:
        existing_collection(store)  # a missing database or collection is named before the models load
    chat_on = store is not None and not args.no_chat
    generator = _generator_config(args) if chat_on else None
    chat = _chat_config(args)
    embed_model = _embedding(args)
    llm = None
    if generator is not None:
        from llara_rag.generator import LocalGenerator

        _quiet_chat_logs(args)
        llm = LocalGenerator(generator)
    app = create_app(embed_model, config, store=store, llm=llm, chat=chat)
    logger.info("Serving %s on http://%s:%d (chat page at /)", embed_model.model_name, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.verbose else "info")
    return 0


def _add_push(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "push",
        help="publish an adapter folder (adapt/finetune output) as a Hugging Face Hub model repository",
    )
    parser.add_argument("adapter", type=Path, help="the folder `llara-rag adapt` or `finetune` wrote")
    parser.add_argument("repo_id", help="OWNER/NAME on the Hub; created when missing")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument(
        "--token", help="a Hub token with write access (default: the one `hf auth login` saved)"
    )
    parser.set_defaults(run=_run_push)


def _run_push(args: argparse.Namespace) -> int:
    from llara_rag.adapter import push_adapter

    print(push_adapter(args.adapter, args.repo_id, private=args.private, token=args.token))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line, as llara-rag's own: the usage is one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_embed,
    _add_eval,
    _add_index,
    _add_query,
    _add_adapt,
    _add_finetune,
    _add_chat,
    _add_serve,
    _add_push,
]
"""Each adds one subcommand and sets its ``run`` default."""


def main(argv: Sequence[str] | None = None) -> int:
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
