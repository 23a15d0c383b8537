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

import _thread
import asyncio
import contextlib
import io
import json
import logging
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llara_rag.indexing.documents import shown

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


def _copy_docs(workspace: Workspace, case_dir: Path) -> Path:
    copy = case_dir / "docs"
    shutil.copytree(workspace.docs, copy)
    return copy


def _folder_of_other_files(workspace: Workspace, case_dir: Path) -> None:
    (case_dir / "mine").mkdir()
    (case_dir / "mine" / "notes.txt").write_text("my own notes", encoding="utf-8")


def _non_utf8_name(workspace: Workspace, case_dir: Path) -> None:
    docs = _copy_docs(workspace, case_dir)
    (docs / os.fsdecode(b"caf\xe9 menu.txt")).write_text("cats purr when happy.", encoding="utf-8")


def _link_outside(workspace: Workspace, case_dir: Path) -> None:
    docs = _copy_docs(workspace, case_dir)
    (case_dir / "private.txt").write_text("a file beside the folder, not in it.", encoding="utf-8")
    (docs / "link.txt").symlink_to(case_dir / "private.txt")


def _docx_only(workspace: Workspace, case_dir: Path) -> None:
    """A folder holding one minimal .docx (the parts docx2txt reads)."""
    docs = case_dir / "docs"
    docs.mkdir()
    body = (
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        "<w:p><w:r><w:t>cats purr when happy.</w:t></w:r></w:p></w:body></w:document>"
    )
    with zipfile.ZipFile(docs / "memo.docx", "w") as archive:
        archive.writestr("word/document.xml", body)


def _read_only_database(workspace: Workspace, case_dir: Path) -> None:
    """The database file made unwritable, for root too (``chattr +i``; ``chmod`` where that is missing)."""
    database = _copy_db(workspace, case_dir) / "chroma.sqlite3"
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(database)], check=False).returncode == 0:
        return
    for path in (database, database.parent):
        path.chmod(0o555 if path.is_dir() else 0o444)


def _writable_again(case_dir: Path) -> None:
    database = case_dir / "db" / "chroma.sqlite3"
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(database)], check=False)
    database.parent.chmod(0o755)
    database.chmod(0o644)


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
    keeps: str | None = field(default=None, metadata={"help": "a path the command must not delete"})
    interrupt: bool = field(default=False, metadata={"help": "Ctrl-C once the model has loaded"})
    restore: Callable[[Path], None] | None = None


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
    Case(
        "adapt --output the documents folder --overwrite",
        ("adapt", "{case}/docs", "--output", "{case}/docs", "--base", "{model}", "--overwrite"),
        "is or holds the documents trained on",
        prepare=_copy_docs,
        keeps="{case}/docs/doc0.txt",
    ),
    Case(
        "adapt --output the documents folder",
        ("adapt", "{case}/docs", "--output", "{case}/docs", "--base", "{model}"),
        "choose a new folder outside them",
        prepare=_copy_docs,
        keeps="{case}/docs/doc0.txt",
    ),
    Case(
        "adapt --output inside the documents folder",
        ("adapt", "{case}/docs", "--output", "{case}/docs/adapter", "--base", "{model}"),
        "is inside the documents folder",
        prepare=_copy_docs,
        leaves_nothing="{case}/docs/adapter",
    ),
    Case(
        "adapt --overwrite on a folder of other files",
        ("adapt", "{docs}", "--output", "{case}/mine", "--base", "{model}", "--overwrite"),
        "is a folder of other files, not a llara-rag adapter",
        prepare=_folder_of_other_files,
        keeps="{case}/mine/notes.txt",
    ),
    Case(
        "adapt --output a file",
        ("adapt", "{docs}", "--output", "{case}/mine/notes.txt", "--base", "{model}", "--overwrite"),
        "is a file, not a llara-rag adapter",
        prepare=_folder_of_other_files,
        keeps="{case}/mine/notes.txt",
    ),
    Case(
        "index a file whose name is not UTF-8",
        ("index", "{case}/docs", "--db", "{case}/db", "--model", "{model}"),
        "skipped TMP/docs/caf\\xe9 menu.txt: its name is not UTF-8",
        code=0,
        before_model=False,
        prepare=_non_utf8_name,
    ),
    Case(
        "index a symbolic link to a file outside the folder",
        ("index", "{case}/docs", "--db", "{case}/db", "--model", "{model}"),
        "a symbolic link to TMP/private.txt, outside TMP/docs",
        code=0,
        before_model=False,
        prepare=_link_outside,
    ),
    Case(
        "index a .docx",
        ("index", "{case}/docs", "--db", "{case}/db", "--model", "{model}"),
        "added 1, updated 0, unchanged 0, removed 0, skipped 0",
        code=0,
        before_model=False,
        prepare=_docx_only,
    ),
    Case(
        "query bytes that are not UTF-8",
        ("query", "caf\udce9", "--db", "{db}", "--model", "{model}"),
        "The question holds '\\udce9' at position 3, which is no character",
    ),
    Case(
        "embed bytes that are not UTF-8",
        ("embed", "caf\udce9", "--model", "{model}"),
        "Text 0 holds '\\udce9'",
        before_model=False,
    ),
    Case(
        "index --collection of 510 characters",
        (*INDEX, "--collection", "c" * 510),
        "the file names of its ingestion record would exceed the 255 a file system allows",
        leaves_nothing="{case}/db",
    ),
    Case("--collection with ..", (*QUERY, "--collection", "a..b"), "--collection 'a..b' holds '..'"),
    Case("--collection an IP address", (*QUERY, "--collection", "127.0.0.1"), "is an IP address"),
    Case("--where an operator", (*QUERY, "--where", "$or=1"), "where '$or': not a metadata key"),
    Case(
        "query a --db that is a file",
        ("query", "cats", "--db", "{case}/db.txt", "--model", "{model}"),
        "is a file, not a database folder",
        prepare=lambda workspace, case_dir: (case_dir / "db.txt").write_text("notes", encoding="utf-8"),
    ),
    Case(
        "index into a --db that is a file",
        ("index", "{docs}", "--db", "{case}/db.txt", "--model", "{model}"),
        "is a file, not a database folder",
        prepare=lambda workspace, case_dir: (case_dir / "db.txt").write_text("notes", encoding="utf-8"),
        keeps="{case}/db.txt",
    ),
    Case(
        "query a read-only --db",
        ("query", "cats", "--db", "{case}/db", "--model", "{model}"),
        "Cannot open the database folder TMP/db: it is read-only",
        prepare=_read_only_database,
        restore=_writable_again,
    ),
    Case(
        "Ctrl-C during index",
        ("index", "{docs}", "--db", "{case}/db", "--model", "{model}"),
        "interrupted (Ctrl-C); what was written is kept",
        code=130,
        before_model=False,
        interrupt=True,
    ),
    Case(
        "serve --api-key of one character",
        ("serve", "--embeddings-only", "--model", "{model}", "--api-key", "k"),
        "--api-key is 1 characters; a key needs at least 16",
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
    lost: bool = False


KEY = "bad-inputs-key-0123456789"
BODY_LIMIT_MB = 0.01
"""The open service's --max-body-mb in these cases: 10 kB, so an over-limit body stays small here
(``benchmarks/body_memory.py`` sends 300 MB to a real server)."""


@dataclass(frozen=True)
class HttpCase:
    """One request a client (or a web page, or an attacker) can get wrong, and what the service answers.

    ``keyed``: sent to the service started with an API key (and sent without it), else to the one
    without a key. ``body`` is sent as JSON, ``raw`` as bytes with a JSON content type.
    """

    name: str
    method: str
    path: str
    expect: str
    status: int
    body: object = None
    raw: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    keyed: bool = False


HTTP_CASES: list[HttpCase] = [
    HttpCase(
        "embeddings: a lone surrogate in a text",
        "POST",
        "/v1/embeddings",
        "input[1] holds '\\ud800' at position 4, which is no character",
        400,
        raw=b'{"input": ["cats purr", "bad \\ud800"]}',
    ),
    HttpCase(
        "embeddings: a body that is not UTF-8",
        "POST",
        "/v1/embeddings",
        "the body could not be read: send UTF-8 JSON",
        400,
        raw=b'{"input": "caf\xe9"}',
    ),
    HttpCase(
        "embeddings: a body that is not JSON",
        "POST",
        "/v1/embeddings",
        "the body is not valid JSON",
        422,
        raw=b'{"input": ',
    ),
    HttpCase(
        "embeddings: a body over --max-body-mb",
        "POST",
        "/v1/embeddings",
        f"over the service's limit of {BODY_LIMIT_MB:g} MB (llara-rag serve --max-body-mb)",
        413,
        body={"input": ["cats purr " * 1500]},
    ),
    HttpCase(
        "search: where with an operator",
        "POST",
        "/v1/search",
        "where '$or': not a metadata key",
        422,
        body={"query": "cats", "where": {"$or": "x"}},
    ),
    HttpCase(
        "search: where with an empty key",
        "POST",
        "/v1/search",
        "where '': not a metadata key",
        422,
        body={"query": "cats", "where": {"": "x"}},
    ),
    HttpCase("an unknown path", "GET", "/v1/nothing", "no route /v1/nothing", 404),
    HttpCase(
        "a wrong method", "GET", "/v1/embeddings",
        "GET is not accepted on /v1/embeddings; use POST",
        405,
    ),
    HttpCase(
        "a Host that is not a loopback name, without a key (DNS rebinding)",
        "GET",
        "/v1/models",
        "Host 'attacker.example' is not this service's",
        400,
        headers=(("host", "attacker.example"),),
    ),
    HttpCase(
        "embeddings without the key",
        "POST",
        "/v1/embeddings",
        "missing or wrong API key",
        401,
        body={"input": "cats"},
        keyed=True,
    ),
    HttpCase("/docs without the key", "GET", "/docs", "missing or wrong API key", 401, keyed=True),
    HttpCase("/redoc without the key", "GET", "/redoc", "missing or wrong API key", 401, keyed=True),
    HttpCase(
        "/openapi.json without the key", "GET", "/openapi.json", "missing or wrong API key", 401, keyed=True
    ),
    HttpCase(
        "a body over the limit without the key",
        "POST",
        "/v1/embeddings",
        "missing or wrong API key",
        401,
        body={"input": ["cats purr " * 1500]},
        keyed=True,
    ),
]
CONCURRENT_VALID = 6


@dataclass
class HttpOutcome:
    """What the service answered one case: its status, message, and whether the body has OpenAI's shape."""

    name: str
    request: str
    status: int
    message: str
    openai_shape: bool


def serve_workspace(workspace: Workspace) -> dict[bool, object]:
    """The service over the workspace's collection, without a key (``False``) and with one (``True``)."""
    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.indexing.store import StoreConfig
    from llara_rag.serving import ServiceConfig, create_app

    embed_model = LLaRAEmbedding(model_name=str(workspace.model))
    store = StoreConfig(path=workspace.db)
    return {
        False: create_app(
            embed_model, ServiceConfig(max_body_mb=BODY_LIMIT_MB, batch_wait_ms=300), store=store
        ),
        True: create_app(embed_model, ServiceConfig(api_key=KEY, max_body_mb=BODY_LIMIT_MB), store=store),
    }


def _described(case: HttpCase) -> str:
    body = case.raw.decode("utf-8", "backslashreplace") if case.raw is not None else json.dumps(case.body)
    if len(body) > 80:
        body = body[:60] + f"... ({len(body):,} bytes)"
    headers = "".join(f" {name}: {value}" for name, value in case.headers)
    return f"{case.method} {case.path}{headers}" + (f" {body}" if case.body is not None or case.raw else "")


def _outcome(name: str, request: str, response) -> HttpOutcome:
    try:
        error = response.json()["error"]
        shaped = set(error) == {"message", "type", "code"} and error["code"] == response.status_code
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        shaped, message = False, response.text
    return HttpOutcome(name, request, response.status_code, message, shaped)


async def _send(apps: dict[bool, object], case: HttpCase) -> HttpOutcome:
    import httpx

    transport = httpx.ASGITransport(app=apps[case.keyed])
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        content = case.raw if case.raw is not None else None
        headers = {"content-type": "application/json", **dict(case.headers)}
        if case.raw is None and case.body is not None:
            content = json.dumps(case.body).encode()
        response = await http.request(case.method, case.path, content=content, headers=headers)
    return _outcome(case.name, _described(case), response)


def run_http_case(case: HttpCase, apps: dict[bool, object]) -> HttpOutcome:
    return asyncio.run(_send(apps, case))


def run_concurrent_case(apps: dict[bool, object]) -> tuple[HttpOutcome, list[int]]:
    """Valid requests sent together with a bad one (one batching window): the bad one's answer, and the
    valid ones' statuses."""
    import httpx

    async def send_all():
        transport = httpx.ASGITransport(app=apps[False])
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            valid = [
                http.post("/v1/embeddings", json={"input": f"cats purr {i}"}) for i in range(CONCURRENT_VALID)
            ]
            json_type = {"content-type": "application/json"}
            bad = http.post("/v1/embeddings", content=b'{"input": "bad \\ud800"}', headers=json_type)
            return await asyncio.gather(bad, *valid)

    bad, *valid = asyncio.run(send_all())
    name = f"{CONCURRENT_VALID} valid requests and one with a lone surrogate, at once"
    outcome = _outcome(name, 'POST /v1/embeddings {"input": "bad \\ud800"} beside 6 valid ones', bad)
    statuses = [response.status_code for response in valid]
    outcome.message += f" (the {CONCURRENT_VALID} valid ones: {', '.join(map(str, statuses))})"
    return outcome, statuses


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
def _watch_model_loads(interrupt: bool = False) -> Iterator[list[str]]:
    """Records every encoder asked for (``get_encoder``, through which every command loads one); with
    ``interrupt``, presses Ctrl-C (a ``KeyboardInterrupt`` in the main thread) once it has loaded."""
    from llara_rag.encoding import embedding, encoder

    loads: list[str] = []
    real = encoder.get_encoder

    def watched(config, *args, **kwargs):
        loads.append(str(config.model))
        loaded = real(config, *args, **kwargs)
        if interrupt:
            _thread.interrupt_main()
        return loaded

    embedding.get_encoder = encoder.get_encoder = watched
    # Ctrl-C reaches the command as KeyboardInterrupt only through Python's own SIGINT handler, which code
    # run earlier in the process (a server, a chat loop) may have replaced.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield loads
    finally:
        embedding.get_encoder = encoder.get_encoder = real
        signal.signal(signal.SIGINT, handler)


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
        watch = _watch_model_loads(case.interrupt)
        with watch as loads, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse refusing a flag
                code = exit.code if isinstance(exit.code, int) else 2
    if case.restore is not None:
        case.restore(case_dir)
    errors, output = err.getvalue().strip(), out.getvalue().strip()
    message = shown(output if code == 0 and output else errors or output)  # a summary, else the refusal
    for name, value in sorted(values.items(), key=lambda item: -len(item[1])):
        message = message.replace(value, SHOWN[name])
    message = UUID.sub("ID", message)  # collection ids differ from run to run
    leftover = case.leaves_nothing is not None and Path(case.leaves_nothing.format(**values)).exists()
    lost = case.keeps is not None and not Path(case.keeps.format(**values)).exists()
    command = "llara-rag " + " ".join(shlex.quote(shown(part.format(**SHOWN))) for part in case.argv)
    return Outcome(case.name, command, code, message, bool(loads), leftover, lost)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def http_markdown(outcomes: list[HttpOutcome]) -> list[str]:
    lines = [
        "",
        "## The HTTP service",
        "",
        f"{len(outcomes)} requests to `llara-rag serve` (in process, over ASGI) on DB with TINY: the service "
        f"without a key (--max-body-mb {BODY_LIMIT_MB:g}) or, where marked, with one and sent without it. "
        "Every answer is OpenAI's error shape `{\"error\": {\"message\", \"type\", \"code\"}}`.",
        "",
        "| case | request | HTTP status | OpenAI shape | message |",
        "|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        cells = [
            outcome.name,
            f"`{_cell(outcome.request)}`",
            str(outcome.status),
            "yes" if outcome.openai_shape else "no",
            _cell(outcome.message),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_markdown(results: dict) -> list[str]:
    """The table of ``benchmarks/body_memory.py``'s results (peak memory of a server sent 300 MB)."""
    lines = [
        "",
        "## Memory of the server during a 300 MB request",
        "",
        results["intro"],
        "",
        "| code | service started with a key | answer | peak RSS before | peak RSS after | growth |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['code']} | {'yes' if row['key'] else 'no'} | {row['status']} | {row['peak_before_mb']:.0f} MB "
            f"| {row['peak_after_mb']:.0f} MB | {row['peak_after_mb'] - row['peak_before_mb']:+.0f} MB |"
        )
    return lines


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
            _cell(outcome.message),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="llara-bad-inputs-") as folder:
        root = Path(folder)
        workspace = build_workspace(root / "workspace")
        outcomes = [run_case(case, workspace, root / "cases") for case in CASES]
        with _quiet():
            apps = serve_workspace(workspace)
            http = [run_http_case(case, apps) for case in HTTP_CASES]
            http.append(run_concurrent_case(apps)[0])
    RESULTS.mkdir(parents=True, exist_ok=True)
    memory = RESULTS / "body_memory.json"
    lines = [markdown(outcomes).rstrip("\n"), *http_markdown(http)]
    if memory.exists():
        lines += memory_markdown(json.loads(memory.read_text(encoding="utf-8")))
    text = "\n".join(lines) + "\n"
    (RESULTS / "reliability.md").write_text(text, encoding="utf-8")
    payload = {"cases": [asdict(outcome) for outcome in outcomes], "http": [asdict(outcome) for outcome in http]}
    (RESULTS / "reliability.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
