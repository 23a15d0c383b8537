"""`llara-rag adapt`, `finetune` and `push`: train an adapter on documents or labelled pairs, publish it.

Their training options are generated from :class:`~llara_rag.training.AdaptationArguments` and
:class:`~llara_rag.training.ContrastiveArguments` (:mod:`llara_rag.cli.flags`): a flag's name, default
and help live on the field it sets. Only how a run goes (output, checkpoints, resume, evaluation while
training) is declared here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_rag.cli.flags import add_options, option_values, options_of

if TYPE_CHECKING:
    from llara_rag.evaluation import RetrievalEvaluator


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """How a training run goes, beside what it trains."""
    parser.add_argument("--output", required=True, help="the adapter directory to write")
    run = parser.add_argument_group("run")
    run.add_argument("--checkpoints", default=None, help="checkpoint folder (default: OUTPUT.checkpoints)")
    run.add_argument("--restart", action="store_true", help="ignore existing checkpoints instead of resuming")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an adapter already at --output that was trained with other settings",
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


def _training_values(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The settings' fields from their generated flags, and the checkpoint folder from --output."""
    return {
        **option_values(args, options_of(settings)),
        "output_dir": args.checkpoints or f"{args.output.rstrip('/')}.checkpoints",
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

    every = args.eval_steps or int(args.save_steps)
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


def _add_training_command(
    sub: argparse._SubParsersAction,
    name: str,
    source: tuple[str, str],
    settings: str,
    generated: bool,
    **texts: str,
) -> None:
    """A training command: its data (``source``: name and help), how the run goes, and, when ``generated``,
    the options of ``settings`` (an ``llara_rag.training`` arguments class, imported only then)."""
    parser = sub.add_parser(name, **texts)
    parser.add_argument(source[0], help=source[1])
    _add_run_arguments(parser)
    if generated:
        import llara_rag.training

        add_options(parser.add_argument_group("training"), options_of(getattr(llara_rag.training, settings)))
    parser.set_defaults(run=run_training)


def add_adapt(sub: argparse._SubParsersAction, generated: bool) -> None:
    _add_training_command(
        sub,
        "adapt",
        ("docs", "a folder of documents, a .jsonl file with a 'text' field, or a BEIR folder"),
        "AdaptationArguments",
        generated,
        help="adapt the embedder to your documents, without labels (LLaRA EBAE/EBAR, then contrastive pairs, "
        "then the default's own supervised pairs again)",
        description="Trains a LoRA adapter on DOCS (a folder of txt/md/html/pdf/docx, a .jsonl file or a BEIR "
        "folder) and writes it to --output. Rerun the same command to resume after an interruption. "
        "On many GPUs: torchrun --nproc-per-node 8 $(which llara-rag) adapt DOCS --output DIR [--deepspeed ds.json].",
    )


def add_finetune(sub: argparse._SubParsersAction, generated: bool) -> None:
    _add_training_command(
        sub,
        "finetune",
        ("pairs", 'a .jsonl file ({"query", "pos": [...], "neg": [...]}) or a BEIR folder'),
        "ContrastiveArguments",
        generated,
        help="fine-tune the embedder on labelled queries (contrastive, with mined hard negatives)",
        description="Trains a LoRA adapter with InfoNCE on PAIRS (a JSONL file of {query, pos, neg} or a BEIR folder, "
        "whose --split qrels are read and nothing else) and writes it to --output. --adapter continues training an "
        "adapter from `llara-rag adapt`. Rerun the same command to resume. On many GPUs: torchrun --nproc-per-node 8 "
        "$(which llara-rag) finetune PAIRS --output DIR (passages of all devices serve as negatives).",
    )


def run_training(args: argparse.Namespace) -> int:
    from llara_rag.training import AdaptationArguments, ContrastiveArguments, adapt, finetune

    if args.command == "adapt":
        training = AdaptationArguments(**_training_values(args, AdaptationArguments))
        result = adapt(args.docs, args.output, training, **_run_options(args))
    else:
        arguments = ContrastiveArguments(**_training_values(args, ContrastiveArguments))
        result = finetune(args.pairs, args.output, arguments, **_run_options(args))
        if result.data:
            print(result.data.describe())
    _print_adapter(result.adapter, result.training, args.model)
    return 0


def add_push(sub: argparse._SubParsersAction, generated: bool) -> None:
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
    parser.set_defaults(run=run_push)


def run_push(args: argparse.Namespace) -> int:
    from llara_rag.encoding.adapter import push_adapter

    print(push_adapter(args.adapter, args.repo_id, private=args.private, token=args.token))
    return 0
