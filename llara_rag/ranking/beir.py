"""Reading a BEIR-format collection: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Real collections are messy (empty abstracts, judgments for documents that were never shipped), so
whatever cannot be evaluated is dropped, counted in :class:`SkippedInputs` and logged by id, and only a
folder that is not a collection at all is an error.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field

from llara_rag.errors import DatasetError

logger = logging.getLogger(__name__)

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
SHOWN_IDS = 5
BEIR_LAYOUT = (
    f'a BEIR folder holds {CORPUS_FILE} (one {{"_id", "title", "text"}} object a line), '
    f'{QUERIES_FILE} ({{"_id", "text"}}) and {QRELS_DIR}/<split>.tsv (query-id, corpus-id, score)'
)

Qrels = dict[str, dict[str, int]]


class SkippedInputs(BaseModel):
    """Ids left out of the evaluation, each list naming why."""

    empty_documents: list[str] = Field(default_factory=list, description="No title and no text: not indexed.")
    duplicate_documents: list[str] = Field(default_factory=list, description="Repeated ids: first kept.")
    unknown_documents: list[str] = Field(
        default_factory=list, description="Judged but absent from the corpus."
    )
    unknown_queries: list[str] = Field(
        default_factory=list, description="Judged but absent from the queries."
    )
    empty_queries: list[str] = Field(default_factory=list, description="Judged but with empty text.")
    queries_without_relevant: list[str] = Field(
        default_factory=list, description="Judged, but no document has a positive score."
    )

    def log(self, collection: str) -> None:
        for name, info in type(self).model_fields.items():
            ids = getattr(self, name)
            if ids:
                shown = ", ".join(ids[:SHOWN_IDS]) + (" ..." if len(ids) > SHOWN_IDS else "")
                logger.warning(
                    "%s: skipped %d %s (%s) %s",
                    collection,
                    len(ids),
                    name.replace("_", " "),
                    info.description,
                    shown,
                )


@dataclass(frozen=True)
class Collection:
    """The retrievable documents (title + text, as BEIR joins them), the judged queries and their qrels."""

    name: str
    split: str
    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]
    queries: dict[str, str]
    qrels: Qrels
    skipped: SkippedInputs = field(default_factory=SkippedInputs)

    @cached_property
    def digest(self) -> str:
        """Identifies the document texts, so cached vectors are never reused for an edited corpus."""
        hasher = hashlib.sha256()
        for doc_id, text in zip(self.doc_ids, self.doc_texts):
            hasher.update(json.dumps([doc_id, text]).encode())
        return hasher.hexdigest()[:16]


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(
                    f"{path}:{number} is not valid JSON ({error.msg}); {BEIR_LAYOUT}."
                ) from error
            if not isinstance(record, dict) or "_id" not in record:
                raise DatasetError(f'{path}:{number} has no "_id" field; {BEIR_LAYOUT}.')
            yield number, record


def _text(record: dict, *keys: str) -> str:
    return " ".join(str(record.get(key) or "").strip() for key in keys).strip()


def read_corpus(path: Path, skipped: SkippedInputs) -> dict[str, str]:
    corpus: dict[str, str] = {}
    empty: set[str] = set()
    for _, record in _records(path):
        doc_id = str(record["_id"])
        if doc_id in corpus or doc_id in empty:
            skipped.duplicate_documents.append(doc_id)
            continue
        text = _text(record, "title", "text")
        if text:
            corpus[doc_id] = text
        else:
            empty.add(doc_id)
            skipped.empty_documents.append(doc_id)
    return corpus


def read_queries(path: Path) -> dict[str, str]:
    return {str(record["_id"]): _text(record, "text") for _, record in _records(path)}


def read_qrels(path: Path) -> Qrels:
    """Reads ``query-id corpus-id score`` rows (a header is optional; 4-column TREC rows are accepted)."""
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (number == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}):
                continue
            if len(row) == 1:
                row = row[0].split()
            if len(row) not in (3, 4):
                raise DatasetError(f"{path}:{number} has {len(row)} columns, expected 3; {BEIR_LAYOUT}.")
            query_id, doc_id, score = row[0].strip(), row[-2].strip(), row[-1].strip()
            try:
                qrels.setdefault(query_id, {})[doc_id] = int(float(score))
            except ValueError as error:
                raise DatasetError(f"{path}:{number}: relevance {score!r} is not a number.") from error
    return qrels


def _check_layout(path: Path, split: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder; {BEIR_LAYOUT}.")
    qrels = path / QRELS_DIR / f"{split}.tsv"
    missing = [name for name in (CORPUS_FILE, QUERIES_FILE) if not (path / name).is_file()]
    if missing:
        raise DatasetError(
            f"{path} is not a BEIR-format collection (missing {', '.join(missing)}); {BEIR_LAYOUT}."
        )
    if not qrels.is_file():
        splits = sorted(p.stem for p in (path / QRELS_DIR).glob("*.tsv"))
        hint = f"its splits are: {', '.join(splits)}" if splits else f"{BEIR_LAYOUT}"
        raise DatasetError(f"{path} has no judgments for split {split!r} ({qrels} is missing); {hint}.")
    return qrels


def load_collection(path: str | Path, split: str = "test") -> Collection:
    """Reads and cross-checks a BEIR folder; see :class:`SkippedInputs` for what is dropped."""
    path = Path(path).expanduser()
    qrels_path = _check_layout(path, split)
    skipped = SkippedInputs()
    corpus = read_corpus(path / CORPUS_FILE, skipped)
    if not corpus:
        raise DatasetError(f"{path / CORPUS_FILE} holds no document with text; {BEIR_LAYOUT}.")
    all_queries = read_queries(path / QUERIES_FILE)
    known_docs = corpus.keys() | set(skipped.empty_documents)
    qrels: Qrels = {}
    for query_id, judged in read_qrels(qrels_path).items():
        if query_id not in all_queries:
            skipped.unknown_queries.append(query_id)
            continue
        if not all_queries[query_id]:
            skipped.empty_queries.append(query_id)
            continue
        kept = {doc_id: score for doc_id, score in judged.items() if doc_id in known_docs}
        skipped.unknown_documents.extend(doc_id for doc_id in judged if doc_id not in known_docs)
        if not any(score > 0 for score in kept.values()):
            skipped.queries_without_relevant.append(query_id)
            continue
        qrels[query_id] = kept
    skipped.unknown_documents = sorted(set(skipped.unknown_documents))
    if not qrels:
        raise DatasetError(
            f"{qrels_path} judges no query that is in {QUERIES_FILE} with a relevant document in "
            f"{CORPUS_FILE}; check that the ids in the three files match."
        )
    collection = Collection(
        name=path.resolve().name,
        split=split,
        doc_ids=tuple(corpus),
        doc_texts=tuple(corpus.values()),
        queries={query_id: all_queries[query_id] for query_id in qrels},
        qrels=qrels,
        skipped=skipped,
    )
    skipped.log(collection.name)
    logger.info(
        "%s: %d documents, %d judged queries (%s split)", collection.name, len(corpus), len(qrels), split
    )
    return collection
