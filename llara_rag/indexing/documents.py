"""Documents from a folder: which files, and their text through LlamaIndex's readers, or why not.

One reader for every door: ``llara-rag index`` and ``llara-rag adapt`` see the same files, skipped for
the same reasons (empty, over the size limit, binary without a reader, not UTF-8, a reader failure, no
text).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from llara_rag.errors import InvalidInputError

if TYPE_CHECKING:
    from llama_index.core import Document
    from llama_index.core.readers.base import BaseReader

SNIFF_BYTES = 8192
"""Bytes looked at for a NUL, the mark of a binary file."""
DEFAULT_MAX_FILE_BYTES = 5_000_000
"""Larger files are skipped, with a reason: 5 MB of text is about 5,500 chunks of 256 tokens, some 40
minutes of SmolLM2 on a 2-core CPU; a larger file is better split, or let in with a higher limit."""


class Skip(BaseModel):
    """An input left out, and why: a file of a folder, a line of a JSONL file, a labelled group.

    ``index`` lists them in its summary, ``adapt`` and ``finetune`` count them by reason before training.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    reason: str


def file_extractors() -> dict[str, BaseReader]:
    """Readers beyond LlamaIndex's defaults: HTML by its body's text (its default reads the markup)."""
    from llama_index.readers.file import HTMLTagReader

    return {".html": HTMLTagReader(tag="body"), ".htm": HTMLTagReader(tag="body")}


def supported_files() -> str:
    """What a folder of documents may hold, for messages about one that held nothing usable."""
    from llama_index.core import SimpleDirectoryReader

    readers = ", ".join(sorted(SimpleDirectoryReader.supported_suffix_fn()))
    return f"any UTF-8 text such as .txt, .md or .html, and {readers}; hidden files are left out"


def file_metadata(path: str) -> dict[str, str | int]:
    """Path, name, type and size — no timestamps: the docstore hash covers metadata, and a file that was
    merely touched, copied or read (atime) must not count as changed."""
    metadata: dict[str, str | int] = {
        "file_path": path,
        "file_name": os.path.basename(path),
        "file_size": os.path.getsize(path),
    }
    file_type = mimetypes.guess_type(path)[0]
    if file_type:
        metadata["file_type"] = file_type
    return metadata


def shown(path: Path | str) -> str:
    """``path`` as it can be printed and stored: bytes of a non-UTF-8 name as ``\\xff`` escapes (Python
    holds them as lone surrogates, which no UTF-8 output, log or JSON record accepts)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def list_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, hidden files and folders excluded, in a stable order."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder; give the folder of documents to index.")
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def read_file(
    path: Path,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    extractors: dict[str, BaseReader] | None = None,
    folder: Path | None = None,
) -> list[Document] | str:
    """The file's documents through LlamaIndex's readers, or the reason it cannot be indexed.

    Files without a dedicated reader are read as UTF-8 text; binary and undecodable ones are caught
    here, where LlamaIndex would silently drop the bad bytes. A name that is not UTF-8 could be neither
    recorded nor shown, and a link out of ``folder`` (the folder being read) would bring in a file the
    user did not point at: both are skipped.
    """
    from llama_index.core import SimpleDirectoryReader

    if shown(path) != str(path):
        return (
            "its name is not UTF-8 (shown with \\x escapes); rename it, e.g. with `convmv -f latin1 -t utf8`"
        )
    if folder is not None and not path.resolve().is_relative_to(folder.resolve()):
        return (
            f"a symbolic link to {shown(path.resolve())}, outside {shown(folder)}; copy the file into the "
            "folder to index it"
        )
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    if size > max_bytes:
        return (
            f"{size / 1e6:.1f} MB is over the {max_bytes / 1e6:g} MB limit (raise --max-file-mb to index it)"
        )
    if path.suffix.lower() not in SimpleDirectoryReader.supported_suffix_fn():
        data = path.read_bytes()
        if b"\0" in data[:SNIFF_BYTES]:
            return f"binary file with no reader for {path.suffix or 'files without an extension'!r}"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"not UTF-8 text (invalid byte at offset {error.start}); convert it to UTF-8"
    try:
        documents = SimpleDirectoryReader.load_file(
            path,
            file_metadata,
            file_extractors() if extractors is None else extractors,
            filename_as_id=True,
            errors="strict",
            raise_on_error=True,
        )
    except ImportError as error:
        return f"its reader needs an optional package: {error}"
    except Exception as error:  # noqa: BLE001 - any reader failure skips this one file, with its message
        return f"the {path.suffix} reader failed: {error.__cause__ or error}"
    documents = [document for document in documents if document.text.strip()]
    if not documents:
        return "no text in it (a whitespace-only file, an image or a scanned PDF)"
    return documents
