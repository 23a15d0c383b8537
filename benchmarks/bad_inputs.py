"""Every input a user can get wrong, through `llara-rag` itself: the exit code and the message each gets.

Each case runs the CLI's ``main([...])`` in this process, against a workspace of tiny random models (a
backbone, another of a different width, an adapter from a one-step `adapt`), a small folder of documents
and a collection indexed from it; cases that damage a file work on their own copy. Model loads are
watched, so the table says which refusals come before any model loads, and cases that must leave nothing
behind (a database folder made by a failed command) are checked for it.

    python benchmarks/bad_inputs.py   # benchmarks/results/reliability.md and .json (a minute on 2 CPU cores)

``tests/test_bad_inputs.py`` runs the same ``CASES`` and checks each exit code, message and side effect,
so the table cannot drift from the code.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import re
import shlex
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Workspace:
    """The files every case can name, as ``{placeholders}`` in its command."""

    root: Path
    model: Path
    wide_model: Path
    adapter: Path
    docs: Path
    empty: Path
    db: Path
    free_port: int

    def values(self, case_dir: Path) -> dict[str, str]:
        named = {
            name: str(getattr(self, name))
            for name in ("model", "wide_model", "adapter", "docs", "empty", "db")
        }
        return {**named, "case": str(case_dir), "port": str(self.free_port)}


SHOWN = {
    "model": "TINY",
    "wide_model": "TINY48",
    "adapter": "ADAPTER",
    "docs": "DOCS",
    "empty": "EMPTY",
    "db": "DB",
    "case": "TMP",
    "port": "PORT",
}
"""How the table writes each placeholder, so it reads the same on every machine."""


def _copy_db(workspace: Workspace, case_dir: Path) -> Path:
    copy = case_dir / "db"
    shutil.copytree(workspace.db, copy)
    return copy


def _random_database(workspace: Workspace, case_dir: Path) -> None:
    database = _copy_db(workspace, case_dir) / "chroma.sqlite3"
    database.write_bytes(random.Random(0).randbytes(database.stat().st_size))


def _truncated_database(workspace: Workspace, case_dir: Path) -> None:
    database = _copy_db(workspace, case_dir) / "chroma.sqlite3"
    database.write_bytes(database.read_bytes()[:5000])


def _corrupt_record(workspace: Workspace, case_dir: Path) -> None:
    (record,) = (_copy_db(workspace, case_dir) / "llara-docstore").glob("*.json")
    record.write_text('{"docstore/metadata": {"', encoding="utf-8")


def _corrupt_lexical_stamp(workspace: Workspace, case_dir: Path) -> None:
    (stamp,) = (_copy_db(workspace, case_dir) / "llara-docstore").glob("*.lexical/current.json")
    stamp.write_text("{not json", encoding="utf-8")


def _emptied_collection(workspace: Workspace, case_dir: Path) -> None:
    from llara_rag.cli import main

    docs = case_dir / "docs"
    docs.mkdir()
    (docs / "only.txt").write_text("cats purr when happy.", encoding="utf-8")
    index = ["index", str(docs), "--db", str(case_dir / "db"), "--model", str(workspace.model)]
    assert main(index) == 0
    (docs / "only.txt").unlink()
    assert main([*index, "--delete-missing"]) == 0


def _adapter_file(name: str, damage: Callable[[bytes], bytes | None]) -> Callable[[Workspace, Path], None]:
    """A copy of the workspace adapter whose ``name`` is replaced by ``damage(content)`` (None: removed)."""

    def prepare(workspace: Workspace, case_dir: Path) -> None:
        copy = case_dir / "adapter"
        shutil.copytree(workspace.adapter, copy)
        content = damage((copy / name).read_bytes())
        if content is None:
            (copy / name).unlink()
        else:
            (copy / name).write_bytes(content)

    return prepare


@dataclass(frozen=True)
class Case:
    """One input a user can get wrong: the command, and what it must answer."""

    name: str
    argv: tuple[str, ...]
    expect: str = field(metadata={"help": "a fragment of the message"})
    code: int = 2
    before_model: bool = field(default=True, metadata={"help": "refused before any model loads"})
    prepare: Callable[[Workspace, Path], object] | None = None
    leaves_nothing: str | None = field(default=None, metadata={"help": "a path the command must not create"})


QUERY = ("query", "cats", "--db", "{db}", "--model", "{model}")
INDEX = ("index", "{docs}", "--db", "{case}/db", "--model", "{model}")
CHAT = ("chat", "--db", "{db}", "--model", "{model}", "--generator", "{model}")
EMBED = ("embed", "cats purr", "--model", "{model}")

CASES: list[Case] = [
    Case("empty question", ("query", "", "--db", "{db}", "--model", "{model}"), "The question '' is empty"),
    Case(
        "whitespace question",
        ("query", "   ", "--db", "{db}", "--model", "{model}"),
        "is empty; ask in words",
    ),
    Case("query -k 0", (*QUERY, "-k", "0"), "-k 0: must be greater than 0; pass e.g. -k 5."),
    Case("query -k -1", (*QUERY, "-k", "-1"), "-k -1: must be greater than 0"),
    Case("query -k not a number", (*QUERY, "-k", "many"), "argument -k: invalid int value: 'many'"),
    Case(
        "query --alpha beyond 1", (*QUERY, "--alpha", "1.5"), "--alpha 1.5: must be less than or equal to 1"
    ),
    Case("query --mode unknown", (*QUERY, "--mode", "sparse"), "invalid choice: 'sparse'"),
    Case("--where without =", (*QUERY, "--where", "file_name"), "Filter 'file_name' is not KEY=VALUE"),
    Case(
        "--where a key no chunk has",
        (*QUERY, "--where", "nosuch=1"),
        "No results: no chunk matches --where nosuch=1; chunks have the keys file_name",
        code=0,
        before_model=False,
    ),
    Case(
        "query an empty collection",
        ("query", "cats", "--db", "{case}/db", "--model", "{model}"),
        "No results: collection 'llara' holds no chunks",
        code=0,
        before_model=False,
        prepare=_emptied_collection,
    ),
    Case(
        "query a --db that does not exist",
        ("query", "cats", "--db", "{case}/nowhere", "--model", "{model}"),
        "No database folder",
        leaves_nothing="{case}/nowhere",
    ),
    Case("query a --collection never indexed", (*QUERY, "--collection", "nosuch"), "No collection 'nosuch'"),
    Case(
        "--collection not a valid name", (*QUERY, "--collection", "a"), "--collection 'a': must be 3 to 512"
    ),
    Case(
        "query with another model than the index's",
        ("query", "cats", "--db", "{db}", "--model", "{wide_model}"),
        "vectors of different encoders cannot be compared",
        before_model=False,
    ),
    Case(
        "chroma.sqlite3 overwritten with random bytes",
        ("query", "cats", "--db", "{case}/db", "--model", "{model}"),
        "Cannot open the database file TMP/db/chroma.sqlite3",
        prepare=_random_database,
    ),
    Case(
        "chroma.sqlite3 truncated",
        (*INDEX,),
        "Cannot open the database file TMP/db/chroma.sqlite3",
        prepare=_truncated_database,
    ),
    Case(
        "ingestion record (docstore JSON) corrupt",
        (*INDEX, "--chunk-size", "64", "--chunk-overlap", "8"),
        "is unreadable",
        prepare=_corrupt_record,
    ),
    Case(
        "lexical index stamp corrupt",
        ("query", "cats", "--db", "{case}/db", "--model", "{model}", "--mode", "lexical"),
        "has no lexical (BM25) index",
        before_model=False,
        prepare=_corrupt_lexical_stamp,
    ),
    Case("--server not an http URL", (*QUERY, "--server", "ftp://chroma"), "Not a Chroma server URL"),
    Case(
        "--server port out of range",
        (*QUERY, "--server", "http://localhost:99999"),
        "Not a Chroma server URL",
    ),
    Case("query --server nobody answers", (*QUERY, "--server", "http://127.0.0.1:{port}"), "Cannot reach"),
    Case(
        "--header without =",
        (*QUERY, "--server", "http://127.0.0.1:{port}", "--header", "token"),
        "--header takes KEY=VALUE",
    ),
    Case("chat -k 0", (*CHAT, "-k", "0"), "-k 0: must be greater than 0"),
    Case(
        "chat --max-new-tokens 0",
        (*CHAT, "--max-new-tokens", "0"),
        "--max-new-tokens 0: must be greater than 0",
    ),
    Case(
        "chat --temperature -1",
        (*CHAT, "--temperature", "-1"),
        "--temperature -1: must be greater than or equal",
    ),
    Case(
        "chat on a --db that does not exist",
        ("chat", "--db", "{case}/nowhere", "--model", "{model}", "--generator", "{model}"),
        "No database folder",
        leaves_nothing="{case}/nowhere",
    ),
    Case("index --chunk-size 0", (*INDEX, "--chunk-size", "0"), "--chunk-size 0: must be greater than 0"),
    Case("index --chunk-size -5", (*INDEX, "--chunk-size", "-5"), "--chunk-size -5: must be greater than 0"),
    Case(
        "index --chunk-overlap equal to --chunk-size",
        (*INDEX, "--chunk-size", "64", "--chunk-overlap", "64"),
        "--chunk-overlap 64 is not smaller than --chunk-size 64",
    ),
    Case(
        "index --chunk-overlap above --chunk-size",
        (*INDEX, "--chunk-size", "64", "--chunk-overlap", "100"),
        "--chunk-overlap 100 is not smaller than --chunk-size 64",
    ),
    Case(
        "index --chunk-overlap -1",
        (*INDEX, "--chunk-overlap", "-1"),
        "--chunk-overlap -1: must be greater than or",
    ),
    Case("index --max-file-mb 0", (*INDEX, "--max-file-mb", "0"), "--max-file-mb 0: must be greater than 0"),
    Case(
        "index --max-file-mb -1", (*INDEX, "--max-file-mb", "-1"), "--max-file-mb -1: must be greater than 0"
    ),
    Case(
        "index --chunk-size beyond the encoder's",
        (*INDEX, "--chunk-size", "100000"),
        "would be cut to the encoder's passage_max_length",
    ),
    Case(
        "index a folder that does not exist",
        ("index", "{case}/missing", "--db", "{case}/db", "--model", "{model}"),
        "is not a folder",
        leaves_nothing="{case}/db",
    ),
    Case(
        "index an empty folder",
        ("index", "{empty}", "--db", "{case}/db", "--model", "{model}"),
        "No documents found in EMPTY (supported: any UTF-8 text",
        leaves_nothing="{case}/db",
    ),
    Case(
        "index again with another --chunk-size",
        (
            "index",
            "{docs}",
            "--db",
            "{case}/db",
            "--model",
            "{model}",
            "--chunk-size",
            "32",
            "--chunk-overlap",
            "4",
        ),
        "is chunked with --chunk-size 64 --chunk-overlap 8",
        prepare=lambda workspace, case_dir: _copy_db(workspace, case_dir),
    ),
    Case(
        "index --server nobody answers",
        ("index", "{docs}", "--server", "http://127.0.0.1:{port}", "--model", "{model}"),
        "Cannot reach",
    ),
    Case("embed an empty text", ("embed", "", "--model", "{model}"), "Text 0 is empty", before_model=False),
    Case(
        "--model that does not exist",
        ("embed", "cats", "--model", "{case}/no-model"),
        "no-model",
        before_model=False,
    ),
    Case(
        "--adapter that does not exist",
        (*EMBED, "--adapter", "{case}/no-adapter"),
        "does not exist",
        before_model=False,
    ),
    Case(
        "adapter_model.safetensors truncated",
        (*EMBED, "--adapter", "{case}/adapter"),
        "adapter_model.safetensors is unreadable",
        before_model=False,
        prepare=_adapter_file("adapter_model.safetensors", lambda data: data[: len(data) // 2]),
    ),
    Case(
        "adapter_model.safetensors random bytes",
        (*EMBED, "--adapter", "{case}/adapter"),
        "adapter_model.safetensors is unreadable",
        before_model=False,
        prepare=_adapter_file(
            "adapter_model.safetensors", lambda data: random.Random(0).randbytes(len(data))
        ),
    ),
    Case(
        "llara_config.json corrupt",
        (*EMBED, "--adapter", "{case}/adapter"),
        "llara_config.json is unreadable",
        before_model=False,
        prepare=_adapter_file("llara_config.json", lambda data: b"{not json"),
    ),
    Case(
        "adapter_config.json corrupt",
        (*EMBED, "--adapter", "{case}/adapter"),
        "adapter_config.json is unreadable",
        before_model=False,
        prepare=_adapter_file("adapter_config.json", lambda data: b"[1, 2"),
    ),
    Case(
        "llara_config.json removed, adapter used on another backbone",
        ("embed", "cats", "--model", "{wide_model}", "--adapter", "{case}/adapter"),
        "has no llara_config.json",
        before_model=False,
        prepare=_adapter_file("llara_config.json", lambda data: None),
    ),
    Case(
        "adapt a folder that does not exist",
        ("adapt", "{case}/missing", "--output", "{case}/adapter", "--base", "{model}"),
        "missing",
        before_model=False,
    ),
]


@dataclass
class Outcome:
    """What one case answered."""

    name: str
    command: str
    code: int
    message: str
    model_loaded: bool
    leftover: bool


def build_workspace(root: Path) -> Workspace:
    """Tiny models, an adapter from a one-step `adapt`, a folder and the collection indexed from it."""
    from llara_rag.cli import main
    from llara_rag.testing import build_tiny_backbone, write_corpus

    model = build_tiny_backbone(root / "tiny")
    wide_model = build_tiny_backbone(root / "tiny48", hidden_size=48)
    docs = write_corpus(root / "docs", n_files=3)
    (root / "empty").mkdir()
    db = root / "db"
    with _quiet(), contextlib.redirect_stdout(io.StringIO()):
        index = ["index", str(docs), "--db", str(db), "--model", str(model), "--chunk-size", "64"]
        assert main([*index, "--chunk-overlap", "8"]) == 0
        adapt = ["adapt", str(docs), "--output", str(root / "adapter"), "--base", str(model)]
        assert (
            main([*adapt, "--stages", "contrastive", "--contrastive-steps", "1", "--whitening-dims", "0"])
            == 0
        )
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Workspace(root, model, wide_model, root / "adapter", docs, root / "empty", db, port)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No log lines, warnings or model-loading bars: what a case prints is its answer alone."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    logging.disable(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        transformers_logging.enable_progress_bar()


@contextlib.contextmanager
def _watch_model_loads() -> Iterator[list[str]]:
    """Records every encoder asked for (``get_encoder``, through which every command loads one)."""
    from llara_rag import embedding, encoder

    loads: list[str] = []
    real = encoder.get_encoder

    def watched(config, *args, **kwargs):
        loads.append(str(config.model))
        return real(config, *args, **kwargs)

    embedding.get_encoder = encoder.get_encoder = watched
    try:
        yield loads
    finally:
        embedding.get_encoder = encoder.get_encoder = real


def run_case(case: Case, workspace: Workspace, scratch: Path) -> Outcome:
    """Runs ``case`` through ``main`` in a fresh folder of ``scratch``; paths in its message become
    placeholders."""
    from llara_rag.cli import main

    case_dir = scratch / re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-")
    case_dir.mkdir(parents=True)
    values = workspace.values(case_dir)
    with _quiet():
        if case.prepare is not None:
            with contextlib.redirect_stdout(io.StringIO()):
                case.prepare(workspace, case_dir)
        argv = [part.format(**values) for part in case.argv]
        out, err = io.StringIO(), io.StringIO()
        with _watch_model_loads() as loads, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse refusing a flag
                code = exit.code if isinstance(exit.code, int) else 2
    message = err.getvalue().strip() or out.getvalue().strip()
    for name, value in sorted(values.items(), key=lambda item: -len(item[1])):
        message = message.replace(value, SHOWN[name])
    message = UUID.sub("ID", message)  # collection ids differ from run to run
    leftover = case.leaves_nothing is not None and Path(case.leaves_nothing.format(**values)).exists()
    command = "llara-rag " + " ".join(shlex.quote(part.format(**SHOWN)) for part in case.argv)
    return Outcome(case.name, command, code, message, bool(loads), leftover)


def markdown(outcomes: list[Outcome]) -> str:
    before = sum(not outcome.model_loaded for outcome in outcomes)
    intro = (
        f"{len(outcomes)} inputs a user can get wrong, each run through the CLI by "
        "`benchmarks/bad_inputs.py` (`tests/test_bad_inputs.py` checks the same cases). TINY and TINY48 are "
        "tiny random backbones (32 and 48 wide), ADAPTER a one-step `adapt` of TINY, DOCS three files "
        "indexed into DB (--chunk-size 64 --chunk-overlap 8), TMP a fresh folder per case. "
        f"{before} of them are refused before any model loads."
    )
    lines = [
        "# Bad inputs: what `llara-rag` answers",
        "",
        intro,
        "",
        "| case | command | exit | before the model loads | message |",
        "|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        cells = [
            outcome.name,
            f"`{outcome.command}`",
            str(outcome.code),
            "no" if outcome.model_loaded else "yes",
            outcome.message.replace("|", "\\|").replace("\n", "<br>"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="llara-bad-inputs-") as folder:
        root = Path(folder)
        workspace = build_workspace(root / "workspace")
        outcomes = [run_case(case, workspace, root / "cases") for case in CASES]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reliability.md").write_text(markdown(outcomes), encoding="utf-8")
    payload = {"cases": [asdict(outcome) for outcome in outcomes]}
    (RESULTS / "reliability.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(markdown(outcomes))


if __name__ == "__main__":
    main()
