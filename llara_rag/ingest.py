"""Ingestion: a folder of documents into a pinned collection, incrementally and safe to re-run.

files -> checks (skipped with a reason) -> LlamaIndex readers -> Documents whose id is their path ->
``IngestionPipeline`` (sentence splitter counted in the encoder's tokens, then the embedding) with
the docstore *upsert* strategy -> ``PinnedChromaVectorStore``, one batch of documents at a time.

The docstore remembers each document's hash, so a re-run embeds only new and changed files; it holds
hashes only (no text), and is rewritten atomically after every batch.

The collection's lexical (BM25) index follows it: the first write of a run stamps the collection with a
new revision, and the run ends by rebuilding the index from the chunk texts Chroma then holds, saved
under that revision (see :mod:`llara_rag.lexical`). A run that wrote nothing rebuilds only an index
that is missing or out of step, so the next ``index`` run builds one for a collection that predates it.

Crash safety follows from the order of writes. The pipeline writes a batch's vectors before the
docstore records its documents, so a run killed midway leaves, at worst, vectors of documents the
docstore does not know (or still knows by their old hash). The next run treats those documents as
new (or changed): it deletes every chunk carrying their id before writing them again. Nothing is
duplicated and nothing is lost; chunk ids are ``<document id>#<position>``, so they are stable too.
A kill before the lexical index is saved leaves the new revision unmatched: queries that need BM25
refuse the old index, and the next run, which rebuilds it, puts things right.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.errors import InvalidInputError
from llara_rag.lexical import LexicalIndex, is_current, lexical_folder, rebuild, start_revision
from llara_rag.store import PinnedChromaVectorStore, StoreConfig, open_store

if TYPE_CHECKING:
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.readers.base import BaseReader
    from llama_index.core.schema import BaseNode
    from llama_index.core.storage.docstore import SimpleDocumentStore

    from llara_rag.embedding import LLaRAEmbedding

logger = logging.getLogger(__name__)

SNIFF_BYTES = 8192
HIDDEN_FROM_MODELS = ["file_path", "file_type", "file_size"]
"""Metadata kept for filters and citations but left out of the text the encoder and the LLM see."""
PART_SUFFIX = re.compile(r"_part_\d+$")


class IngestConfig(BaseModel):
    """How documents are read, cut and written."""

    model_config = ConfigDict(frozen=True)

    chunk_size: int = Field(
        default=256, gt=0, description="Tokens of the encoder per chunk, metadata included."
    )
    chunk_overlap: int = Field(default=32, ge=0)
    documents_per_batch: int = Field(
        default=32,
        gt=0,
        description="Documents embedded and recorded together; a crash redoes at most one batch.",
    )
    max_file_bytes: int = Field(
        default=20_000_000, gt=0, description="Larger files are skipped, with a reason."
    )
    delete_missing: bool = Field(default=False, description="Remove documents whose files left the folder.")


class Skip(BaseModel):
    """A file left out, and why."""

    path: str
    reason: str


class IngestSummary(BaseModel):
    """What a run did, by document id (the file path; ``_part_N`` for files read as several documents)."""

    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    missing: list[str] = Field(
        default_factory=list, description="Gone from the folder, kept without --delete-missing."
    )
    skipped: list[Skip] = Field(default_factory=list)
    chunks_written: int = 0

    def report(self) -> str:
        lines = [
            (
                f"added {len(self.added)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}, "
                f"removed {len(self.removed)}, skipped {len(self.skipped)}; {self.chunks_written} chunks written"
            )
        ]
        lines += [f"  skipped {skip.path}: {skip.reason}" for skip in self.skipped]
        if self.missing:
            lines.append(
                f"  {len(self.missing)} indexed documents are no longer in the folder and were kept; "
                "re-run with --delete-missing to remove them"
            )
        return "\n".join(lines)


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


def list_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, hidden files and folders excluded, in a stable order."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder; give the folder of documents to index.")
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def read_file(path: Path, max_bytes: int, extractors: dict[str, BaseReader]) -> list[Document] | str:
    """The file's documents through LlamaIndex's readers, or the reason it cannot be indexed.

    Files without a dedicated reader are read as UTF-8 text; binary and undecodable ones are caught
    here, where LlamaIndex would silently drop the bad bytes.
    """
    from llama_index.core import SimpleDirectoryReader

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
            path, file_metadata, extractors, filename_as_id=True, errors="strict", raise_on_error=True
        )
    except ImportError as error:
        return f"its reader needs an optional package: {error}"
    except Exception as error:  # noqa: BLE001 - any reader failure skips this one file, with its message
        return f"the {path.suffix} reader failed: {error.__cause__ or error}"
    documents = [document for document in documents if document.text.strip()]
    if not documents:
        return "no text in it (a whitespace-only file, an image or a scanned PDF)"
    for document in documents:
        document.excluded_embed_metadata_keys = list(HIDDEN_FROM_MODELS)
        document.excluded_llm_metadata_keys = list(HIDDEN_FROM_MODELS)
    return documents


def chunk_id(index: int, document: BaseNode) -> str:
    """Stable chunk ids, so a chunk written twice is the same record."""
    return f"{document.node_id}#{index}"


def build_splitter(embed_model: LLaRAEmbedding, config: IngestConfig) -> SentenceSplitter:
    """A sentence-aware splitter counting the encoder's own tokens, so no chunk is silently truncated."""
    from functools import partial

    from llama_index.core.node_parser import SentenceSplitter

    limit = embed_model.encoder.config.passage_max_length
    if config.chunk_size > limit:
        raise InvalidInputError(
            f"Chunks of {config.chunk_size} tokens would be cut to the encoder's passage_max_length of {limit}; "
            f"use --chunk-size {limit} or less."
        )
    tokenizer = embed_model.encoder.backbone.tokenizer
    return SentenceSplitter(
        chunk_size=config.chunk_size,
        chunk_overlap=config.chunk_overlap,
        tokenizer=partial(tokenizer.encode, add_special_tokens=False),
        id_func=chunk_id,
    )


def docstore_path(store_config: StoreConfig, store: PinnedChromaVectorStore) -> Path:
    """One record per collection *instance*: a collection deleted and re-created gets a fresh record,
    instead of one claiming its vectors are still there."""
    collection = store.collection
    return store_config.docstore_folder() / f"{collection.name}-{collection.id}.json"


def load_docstore(path: Path) -> SimpleDocumentStore:
    from llama_index.core.storage.docstore import SimpleDocumentStore

    return SimpleDocumentStore.from_persist_path(str(path)) if path.exists() else SimpleDocumentStore()


def save_docstore(docstore: SimpleDocumentStore, path: Path) -> None:
    """Write-then-rename, so a kill mid-write leaves the previous record intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(path.name + ".partial")
    docstore.persist(str(partial_path))
    os.replace(partial_path, path)


def source_file(document_id: str) -> str:
    return PART_SUFFIX.sub("", document_id)


class Revision:
    """Stamps the collection with a new revision before the first write of a run, and only then."""

    def __init__(self, store: PinnedChromaVectorStore) -> None:
        self.store = store
        self.started = False

    def before_write(self) -> None:
        if not self.started:
            start_revision(self.store.collection)
            self.started = True


def ingest_folder(
    folder: str | Path,
    store: PinnedChromaVectorStore,
    embed_model: LLaRAEmbedding,
    record: Path,
    lexical: Path,
    config: IngestConfig | None = None,
) -> IngestSummary:
    """Brings ``store`` up to date with ``folder``; ``record`` is the docstore file of this collection,
    ``lexical`` the folder of its lexical index."""
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    config = config or IngestConfig()
    root = Path(folder).resolve()
    files = list_files(root)
    docstore = load_docstore(record)
    pipeline = IngestionPipeline(
        transformations=[build_splitter(embed_model, config), embed_model],
        vector_store=store,
        docstore=docstore,
        docstore_strategy=DocstoreStrategy.UPSERTS,
        disable_cache=True,
    )
    summary = IngestSummary()
    revision = Revision(store)
    seen: set[str] = set()
    extractors: dict[str, BaseReader] = {}
    with logging_redirect_tqdm(), tqdm(total=len(files), desc=f"Indexing {root.name}", unit="file") as bar:
        for start in range(0, len(files), config.documents_per_batch):
            batch = files[start : start + config.documents_per_batch]
            documents: list[Document] = []
            for path in batch:
                read = read_file(path, config.max_file_bytes, extractors)
                if isinstance(read, str):
                    summary.skipped.append(Skip(path=str(path), reason=read))
                    logger.info("Skipped %s: %s", path, read)
                else:
                    documents.extend(read)
            updated_before = len(summary.updated)
            new = _classify(documents, docstore, summary)
            seen.update(document.id_ for document in documents)
            if new or len(summary.updated) > updated_before:
                revision.before_write()
            if new:
                store.collection.delete(where={"document_id": {"$in": new}})
            nodes = pipeline.run(documents=documents, store_doc_text=False)
            save_docstore(docstore, record)
            summary.chunks_written += len(nodes)
            bar.update(len(batch))
            bar.set_postfix(
                added=len(summary.added),
                updated=len(summary.updated),
                unchanged=len(summary.unchanged),
                skipped=len(summary.skipped),
                chunks=summary.chunks_written,
            )
    _prune(
        root,
        seen,
        {skip.path for skip in summary.skipped},
        store,
        docstore,
        record,
        config,
        summary,
        revision,
    )
    if revision.started or not is_current(LexicalIndex.read_stamp(lexical), store.collection):
        rebuild(store, lexical)
    return summary


def _classify(
    documents: Sequence[Document], docstore: SimpleDocumentStore, summary: IngestSummary
) -> list[str]:
    """Sorts a batch into added / updated / unchanged as the pipeline's upsert strategy will; returns the new ids."""
    new = []
    for document in documents:
        recorded = docstore.get_document_hash(document.id_)
        if recorded is None:
            summary.added.append(document.id_)
            new.append(document.id_)
        elif recorded != document.hash:
            summary.updated.append(document.id_)
        else:
            summary.unchanged.append(document.id_)
    return new


def _prune(
    root: Path,
    seen: set[str],
    skipped: set[str],
    store: PinnedChromaVectorStore,
    docstore: SimpleDocumentStore,
    record: Path,
    config: IngestConfig,
    summary: IngestSummary,
    revision: Revision,
) -> None:
    """Documents recorded under ``root`` but not read this time: files deleted, or parts a file no longer has.

    A file skipped this run keeps its old chunks: it is still there, only unreadable now.
    """
    prefix = f"{root}{os.sep}"
    gone = sorted(
        document_id
        for document_id in set(docstore.get_all_document_hashes().values())
        if document_id.startswith(prefix)
        and document_id not in seen
        and source_file(document_id) not in skipped
    )
    if not config.delete_missing:
        summary.missing = gone
        return
    if gone:
        revision.before_write()
    for document_id in gone:
        store.delete(document_id)
        docstore.delete_document(document_id, raise_error=False)
        summary.removed.append(document_id)
    if gone:
        save_docstore(docstore, record)


def index_folder(
    folder: str | Path,
    store_config: StoreConfig,
    embed_model: LLaRAEmbedding,
    config: IngestConfig | None = None,
) -> IngestSummary:
    """Opens (creating if needed) the collection of ``store_config`` and brings it up to date with ``folder``."""
    store = open_store(store_config, embed_model)
    return ingest_folder(
        folder,
        store,
        embed_model,
        docstore_path(store_config, store),
        lexical_folder(store_config, store.collection),
        config,
    )
