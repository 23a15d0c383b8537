"""Documents -> (window, next window) training records for the unsupervised LLaRA objective.

A source is a folder of documents (read through LlamaIndex's file readers), a JSONL file with a
``text`` field per line, or a BEIR folder holding ``corpus.jsonl``. Each document is cut into
consecutive windows of ``window_tokens`` tokens of the backbone's tokenizer; a window's EBAR target
is the window after it in the same document (the last window has none). Records come out in a
stable order (sorted file names, then line order), exact duplicate documents and windows are
dropped, and every skipped input is counted with its reason so the user can see what was learnt from.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llara_rag.errors import InvalidInputError
from llara_rag.indexing.documents import Skip, list_files, read_file, shown, supported_files

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

EXAMPLES = 3
"""Names shown per reason a summary gives for skipping."""


@dataclass(frozen=True)
class Record:
    """One training example: a window of a document and the window that follows it (or None)."""

    doc_id: str
    window: int
    text: str
    next_text: str | None

    def to_json(self) -> str:
        return json.dumps(
            {"doc_id": self.doc_id, "window": self.window, "text": self.text, "next_text": self.next_text},
            ensure_ascii=False,
        )


@dataclass
class SkipLog:
    """Inputs left out (:class:`~llara_rag.indexing.documents.Skip`): a summary counts them by reason, with a few
    names each, so it says what was not learnt from."""

    skips: list[Skip] = field(default_factory=list, kw_only=True)

    def skip(self, name: str, reason: str) -> None:
        self.skips.append(Skip(name=name, reason=reason))
        logger.debug("Skipped %s: %s", name, reason)

    @property
    def skipped(self) -> Counter[str]:
        """How many inputs were skipped for each reason."""
        return Counter(skip.reason for skip in self.skips)

    def skipped_lines(self) -> list[str]:
        names: dict[str, list[str]] = {}
        for skip in self.skips:
            names.setdefault(skip.reason, []).append(skip.name)
        return [
            f"skipped {len(names[reason])} ({reason}), e.g. {', '.join(names[reason][:EXAMPLES])}"
            for reason in sorted(names)
        ]


@dataclass
class CorpusSummary(SkipLog):
    """What was read, what was skipped and why: printed before training so nothing is dropped silently."""

    documents: int = 0
    records: int = 0
    records_with_next: int = 0
    duplicate_documents: int = 0
    duplicate_windows: int = 0

    def describe(self) -> str:
        head = (
            f"{self.documents} documents -> {self.records} windows ({self.records_with_next} with a next "
            f"window); dropped {self.duplicate_documents} duplicate documents and {self.duplicate_windows} "
            "duplicate windows"
        )
        return "\n".join([head, *self.skipped_lines()])

    def as_dict(self) -> dict[str, object]:
        return {
            "documents": self.documents,
            "records": self.records,
            "records_with_next": self.records_with_next,
            "duplicate_documents": self.duplicate_documents,
            "duplicate_windows": self.duplicate_windows,
            "skipped": dict(self.skipped),
        }


def jsonl_rows(path: Path, summary: SkipLog) -> Iterator[tuple[str, object]]:
    """(``file:line`` name, parsed value) per non-blank line (of a gzip file too, by its ``.gz`` suffix); a
    line that is not JSON is skipped by name."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                name = f"{path.name}:{number}"
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    summary.skip(name, f"invalid JSON ({error.msg})")
                    continue
                yield name, row
    except (gzip.BadGzipFile, EOFError) as error:
        raise InvalidInputError(
            f"{path} is not a readable gzip file ({error}); pass it uncompressed."
        ) from None


def _jsonl_documents(path: Path, summary: CorpusSummary) -> Iterator[tuple[str, str]]:
    """``title``, a line break and ``text`` per line (a title the text already starts with is not repeated):
    the title on a line of its own, as a heading in a file, so the ``title`` pair maker finds it."""
    for name, row in jsonl_rows(path, summary):
        if not isinstance(row, dict) or not isinstance(row.get("text", ""), str):
            summary.skip(name, "not an object with a string 'text' field")
            continue
        title = str(row.get("title") or "").strip()
        text = str(row.get("text") or "").strip()
        if title and text.lower().startswith(title.lower()):
            text = text[len(title) :].strip()
        if title:
            text = f"{title}\n{text}" if text else title
        yield str(row.get("_id", row.get("id", name))), text


def _folder_documents(folder: Path, summary: CorpusSummary) -> Iterator[tuple[str, str]]:
    """The folder's files as ``llara-rag index`` reads them (one reader, the same skips and reasons)."""
    for path in list_files(folder):
        name = shown(path.relative_to(folder))
        read = read_file(path, folder=folder)
        if isinstance(read, str):
            summary.skip(name, read)
            continue
        yield name, "\n\n".join(document.text for document in read)


def check_source(source: str | Path) -> Path:
    """Fails fast (before any model loads) on a source that cannot hold documents."""
    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidInputError(f"Document source {path} does not exist.")
    if path.is_file() and path.suffix.lower() != ".jsonl":
        raise InvalidInputError(
            f"{path} is a single {path.suffix or 'extension-less'} file; pass a folder of documents, "
            "a .jsonl file with a 'text' field per line, or a BEIR folder with corpus.jsonl."
        )
    return path


def iter_documents(source: str | Path, summary: CorpusSummary) -> Iterator[tuple[str, str]]:
    """(document id, text) pairs from a folder, a JSONL file or a BEIR folder, in a stable order."""
    path = check_source(source)
    if path.is_file():
        yield from _jsonl_documents(path, summary)
    elif (path / "corpus.jsonl").is_file():
        logger.info("Reading the BEIR corpus %s (documents only; queries and qrels are not used)", path)
        yield from _jsonl_documents(path / "corpus.jsonl", summary)
    else:
        yield from _folder_documents(path, summary)


def window_texts(text: str, tokenizer: PreTrainedTokenizerBase, window_tokens: int) -> list[str]:
    """Cuts ``text`` into consecutive spans of ``window_tokens`` tokens, as slices of the original text.

    Slicing the characters (through the tokenizer's offsets) rather than decoding ids keeps the
    records readable and exactly re-tokenisable.
    """
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    windows = []
    for start in range(0, len(offsets), window_tokens):
        chunk = offsets[start : start + window_tokens]
        end = offsets[start + window_tokens][0] if start + window_tokens < len(offsets) else len(text)
        piece = text[chunk[0][0] : end].strip()
        if piece:
            windows.append(piece)
    return windows


def document_key(text: str) -> str:
    """Equal for texts that differ only in case and whitespace: how duplicates are recognised."""
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()


def distinct_documents(source: str | Path, summary: CorpusSummary) -> Iterator[tuple[str, str]]:
    """The non-empty documents of ``source``, each text once (case and whitespace aside), counted in ``summary``."""
    seen: set[str] = set()
    for doc_id, text in iter_documents(source, summary):
        if not text.strip():
            summary.skip(doc_id, "empty")
            continue
        key = document_key(text)
        if key in seen:
            summary.duplicate_documents += 1
            continue
        seen.add(key)
        summary.documents += 1
        yield doc_id, text


def corpus_digest(source: str | Path) -> str:
    """A hash of the distinct documents of ``source`` in reading order: equal digests, equal training text."""
    digest = hashlib.sha256()
    for _, text in iter_documents(source, CorpusSummary()):
        digest.update(document_key(text).encode())
    return digest.hexdigest()[:16]


def build_records(
    source: str | Path, tokenizer: PreTrainedTokenizerBase, window_tokens: int = 128
) -> tuple[list[Record], CorpusSummary]:
    """Reads ``source`` and returns its (window, next window) records with a summary of the reading."""
    if window_tokens < 1:
        raise InvalidInputError(f"window_tokens must be positive, got {window_tokens}.")
    summary = CorpusSummary()
    records: list[Record] = []
    seen_windows: set[str] = set()
    for doc_id, text in distinct_documents(source, summary):
        windows = window_texts(text, tokenizer, window_tokens)
        for index, window in enumerate(windows):
            window_key = document_key(window)
            if window_key in seen_windows:
                summary.duplicate_windows += 1
                continue
            seen_windows.add(window_key)
            following = windows[index + 1] if index + 1 < len(windows) else None
            records.append(Record(doc_id=doc_id, window=index, text=window, next_text=following))
    summary.records = len(records)
    summary.records_with_next = sum(record.next_text is not None for record in records)
    if not records:
        raise InvalidInputError(
            f"No text to learn from in {source}:\n{summary.describe()}\n"
            f"Supported inputs: a folder of documents ({supported_files()}), a .jsonl file with a 'text' "
            "field, or a BEIR folder with corpus.jsonl."
        )
    logger.info("Corpus %s: %s", source, summary.describe())
    return records, summary


def write_records(records: list[Record], path: str | Path) -> None:
    """Saves records as JSONL, one per line, so a run's training data can be inspected or reused."""
    Path(path).write_text("".join(record.to_json() + "\n" for record in records), encoding="utf-8")
