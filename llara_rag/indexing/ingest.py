"""Ingestion: a folder of documents into a pinned collection, incrementally and safe to re-run.

files -> checks (skipped with a reason) -> LlamaIndex readers -> Documents whose id is their path ->
sentence splitter counted in the encoder's tokens -> the embedding -> ``PinnedChromaVectorStore``,
documents read a batch at a time and their chunks embedded and written a batch at a time.

The docstore records each document's *version* (its hash and the chunk settings), so a re-run embeds
only new and changed files; it holds versions only (no text), and is rewritten atomically after every
batch of documents. The chunk settings are also recorded with the collection: a run with other
settings is refused unless asked to re-chunk (``rechunk``), which re-splits every document.

The collection's lexical (BM25) index follows it: the first write of a run stamps the collection with a
new revision, and the run ends by rebuilding the index from the chunk texts Chroma then holds, saved
under that revision (see :mod:`llara_rag.indexing.lexical`). A run that wrote nothing rebuilds only an index
that is missing or out of step, so the next ``index`` run builds one for a collection that predates it.

Crash safety follows from the order of writes. Chunk ids are ``<document id>#<position>`` and each chunk
carries its document's version (:data:`VERSION_KEY`): a document's new chunks are written over its old
ones in place, batch by batch, then its chunks past the new end are deleted, then the docstore records
the new version. So a document never goes without chunks (a reader sees the old ones, or new ones for
the positions written so far), and a run killed midway leaves, at worst, a document whose record is
older than its chunks. The next run keeps the chunks already written for the current version (a huge
file resumes where it stopped), writes the rest and deletes the others: nothing is duplicated and
nothing is lost. A kill before the lexical index is saved leaves the new revision unmatched: queries
that need BM25 refuse the old index, and the next run, which rebuilds it, puts things right.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llara_rag.errors import DamagedStoreError, InvalidInputError
from llara_rag.indexing.documents import (
    DEFAULT_MAX_FILE_BYTES,
    Skip,
    file_extractors,
    list_files,
    read_file,
    shown,
    supported_files,
)
from llara_rag.indexing.lexical import (
    LexicalIndex,
    has_words,
    is_current,
    lexical_folder,
    rebuild,
    start_revision,
)
from llara_rag.indexing.store import (
    PinnedChromaVectorStore,
    StoreConfig,
    find_collection,
    open_store,
    update_metadata,
)
from llara_rag.settings import UserSettings

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import BaseNode
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from tqdm import tqdm

    from llara_rag.encoding.embedding import LLaRAEmbedding

logger = logging.getLogger(__name__)

VERSION_KEY = "document_version"
"""Chunk metadata: the version (document hash and chunk settings) of the document the chunk was cut from."""
HIDDEN_FROM_MODELS = ["file_path", "file_type", "file_size", VERSION_KEY]
"""Metadata kept for filters and citations but left out of the text the encoder and the LLM see."""
PART_SUFFIX = re.compile(r"_part_\d+$")
CHUNKING_KEYS = {
    "chunk_size": "llara:chunk-size",
    "chunk_overlap": "llara:chunk-overlap",
    "embed_file_name": "llara:embed-file-name",
}
"""Collection metadata: the chunk settings its documents are cut and embedded with."""
RECORDED_LATER = {"embed_file_name": True}
"""Chunk settings collections began recording after others, with the value every earlier release used."""


class IngestConfig(UserSettings):
    """How documents are read, cut and written; invalid values are refused naming the `index` flag."""

    model_config = ConfigDict(frozen=True)

    chunk_size: int = Field(
        default=256,
        gt=0,
        description="Tokens of the encoder per chunk, metadata included.",
        json_schema_extra={"flag": "--chunk-size"},
    )
    chunk_overlap: int = Field(
        default=32,
        ge=0,
        description="Tokens shared by neighbouring chunks; fewer than chunk_size.",
        json_schema_extra={"flag": "--chunk-overlap"},
    )
    documents_per_batch: int = Field(
        default=32,
        gt=0,
        description="Documents read and recorded together; a crash re-reads at most one batch.",
    )
    chunks_per_batch: int = Field(
        default=256,
        gt=0,
        description="Chunks embedded and written together: the progress step, and the most a kill loses.",
    )
    max_file_bytes: int = Field(
        default=DEFAULT_MAX_FILE_BYTES,
        gt=0,
        description="Larger files are skipped, with a reason (5 MB of text: about 5,500 chunks, some 40 "
        "minutes on a 2-core CPU).",
        json_schema_extra={"flag": "--max-file-mb", "per_unit": 1_000_000},
    )
    delete_missing: bool = Field(
        default=False,
        description="Remove documents whose files left the folder.",
        json_schema_extra={"flag": "--delete-missing"},
    )
    embed_file_name: bool = Field(
        default=True,
        description="Embed each chunk with a 'file_name: NAME' line above its text; id-like names "
        "(scan_0042.pdf) are better left out.",
        json_schema_extra={"flag": "--no-file-name"},
    )
    rechunk: bool = Field(
        default=False,
        description="Accept chunk settings other than the collection's: every document is re-split (and "
        "embedded again) with the new ones.",
        json_schema_extra={"flag": "--rechunk"},
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"--chunk-overlap {self.chunk_overlap} is not smaller than --chunk-size {self.chunk_size}: "
                "neighbouring chunks would repeat each other; pass e.g. "
                f"--chunk-overlap {self.chunk_size // 8}."
            )
        return self

    @property
    def chunking(self) -> dict[str, int | bool]:
        return {field: getattr(self, field) for field in CHUNKING_KEYS}

    @property
    def hidden_from_encoder(self) -> list[str]:
        return HIDDEN_FROM_MODELS if self.embed_file_name else [*HIDDEN_FROM_MODELS, "file_name"]


def chunking_flags(chunking: dict[str, int | bool]) -> str:
    """The ``index`` flags that give these chunk settings."""
    flags = f"--chunk-size {chunking['chunk_size']} --chunk-overlap {chunking['chunk_overlap']}"
    return flags if chunking["embed_file_name"] else f"{flags} --no-file-name"


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
        lines += [f"  skipped {skip.name}: {skip.reason}" for skip in self.skipped]
        if self.missing:
            lines.append(
                f"  {len(self.missing)} indexed documents are no longer in the folder and were kept; "
                "re-run with --delete-missing to remove them"
            )
        return "\n".join(lines)


def find_documents(folder: Path, config: IngestConfig) -> list[Path]:
    """The files to index; a folder with none is refused (unless it was emptied to delete what it held)."""
    files = list_files(folder)
    if not files and not config.delete_missing:
        raise InvalidInputError(
            f"No documents found in {folder} (supported: {supported_files()}); put documents in it or give "
            "another folder."
        )
    return files


def chunk_id(index: int, document: BaseNode) -> str:
    """Stable chunk ids, so a chunk written twice is the same record."""
    return f"{document.node_id}#{index}"


def check_chunk_size(config: IngestConfig, passage_max_length: int) -> None:
    if config.chunk_size > passage_max_length:
        raise InvalidInputError(
            f"Chunks of {config.chunk_size} tokens would be cut to the encoder's passage_max_length of "
            f"{passage_max_length}; use --chunk-size {passage_max_length} or less."
        )


def build_splitter(embed_model: LLaRAEmbedding, config: IngestConfig) -> SentenceSplitter:
    """A sentence-aware splitter counting the encoder's own tokens, so no chunk is silently truncated."""
    from functools import partial

    from llama_index.core.node_parser import SentenceSplitter

    check_chunk_size(config, embed_model.encoder.config.passage_max_length)
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
    return record_path(store_config, store.collection)


def record_path(store_config: StoreConfig, collection: Collection) -> Path:
    return store_config.collection_file(collection, ".json")


def load_docstore(path: Path) -> SimpleDocumentStore:
    from llama_index.core.storage.docstore import SimpleDocumentStore

    if not path.exists():
        return SimpleDocumentStore()
    try:
        return SimpleDocumentStore.from_persist_path(str(path))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DamagedStoreError(
            f"The ingestion record {path} is unreadable ({error}); delete it and run `llara-rag index` "
            "again: chunks already in the collection are kept, and documents are read again to rebuild it."
        ) from error


def save_docstore(docstore: SimpleDocumentStore, path: Path) -> None:
    """Write-then-rename, so a kill mid-write leaves the previous record intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(path.name + ".partial")
    docstore.persist(str(partial_path))
    os.replace(partial_path, path)


def source_file(document_id: str) -> str:
    return PART_SUFFIX.sub("", document_id)


def document_version(document: Document, config: IngestConfig) -> str:
    """What a document's chunks are cut from: its content and metadata (hash) and the chunk settings."""
    settings = f"{config.chunk_size}/{config.chunk_overlap}" + (
        "" if config.embed_file_name else "/no-file-name"
    )
    return hashlib.sha256(f"{document.hash}:{settings}".encode()).hexdigest()


def recorded_chunking(collection: Collection) -> dict[str, int | bool] | None:
    """The chunk settings the collection's documents are cut with; None before any were recorded."""
    metadata = {CHUNKING_KEYS[field]: value for field, value in RECORDED_LATER.items()} | (
        collection.metadata or {}
    )
    if any(key not in metadata for key in CHUNKING_KEYS.values()):
        return None
    return {
        field: value if isinstance(value := metadata[key], bool) else int(value)
        for field, key in CHUNKING_KEYS.items()
    }


def check_chunking(
    collection: Collection, config: IngestConfig, location: str
) -> dict[str, int | bool] | None:
    """The collection's recorded chunk settings when ``config`` changes them (with ``rechunk``), else None.

    Other settings without ``rechunk`` are refused: they would re-split and embed every document again.
    """
    recorded = recorded_chunking(collection)
    if recorded is None or recorded == config.chunking:
        return None
    if config.rechunk:
        return recorded
    flags = chunking_flags(recorded)
    raise InvalidInputError(
        f"Collection {collection.name!r} in {location} is chunked with {flags}, not "
        f"{chunking_flags(config.chunking)}; pass {flags} to keep its chunks, add "
        "--rechunk to re-split and embed every document again with the new settings, or index into a new "
        "--collection."
    )


def check_before_loading(
    folder: str | Path,
    store_config: StoreConfig,
    config: IngestConfig,
    passage_max_length: int | None = None,
) -> None:
    """What :func:`index_folder` would refuse, found before the model loads (seconds): the folder and its
    files, a server that does not answer, chunk settings other than the collection's or (given the
    encoder's ``passage_max_length``) too long for it, an unreadable ingestion record. Creates nothing."""
    if passage_max_length is not None:
        check_chunk_size(config, passage_max_length)
    find_documents(Path(folder).resolve(), config)
    collection = find_collection(store_config)
    if collection is not None:
        check_chunking(collection, config, store_config.location)
        load_docstore(record_path(store_config, collection))


class Revision:
    """Stamps the collection with a new revision before the first write of a run, and only then."""

    def __init__(self, store: PinnedChromaVectorStore) -> None:
        self.store = store
        self.started = False

    def before_write(self) -> None:
        if not self.started:
            start_revision(self.store.collection)
            self.started = True


class ChunkWriter(Protocol):
    """Embeds chunks and upserts them into the collection: here, or on workers (:mod:`llara_rag.indexing.distributed`)."""

    def write(self, nodes: Sequence[BaseNode], written: Callable[[int], None]) -> None:
        """Writes ``nodes``, calling ``written(count)`` as each batch lands."""
        ...


class LocalWriter:
    """This process embeds a batch of chunks, then writes it: a kill loses at most one batch."""

    def __init__(self, store: PinnedChromaVectorStore, embed_model: LLaRAEmbedding, batch_size: int) -> None:
        self.store = store
        self.embed_model = embed_model
        self.batch_size = batch_size

    def write(self, nodes: Sequence[BaseNode], written: Callable[[int], None]) -> None:
        for start in range(0, len(nodes), self.batch_size):
            batch = nodes[start : start + self.batch_size]
            self.embed_model(batch)
            self.store.upsert(batch)
            written(len(batch))


class Progress:
    """Files read and chunks embedded, as two bars: one huge file can hold thousands of chunks, so the
    chunk bar's rate and time left say how long is left when the file bar stands still."""

    def __init__(self, files: tqdm, chunks: tqdm) -> None:
        self.files = files
        self.chunks = chunks

    def planned(self, total: int, done: int) -> None:
        """``total`` chunks more to have, ``done`` of them already written by an earlier run."""
        self.chunks.total = (self.chunks.total or 0) + total
        self.chunks.update(done)

    def written(self, count: int) -> None:
        self.chunks.update(count)

    def read(self, count: int, summary: IngestSummary) -> None:
        self.files.update(count)
        self.files.set_postfix(
            added=len(summary.added),
            updated=len(summary.updated),
            unchanged=len(summary.unchanged),
            skipped=len(summary.skipped),
        )


def ingest_folder(
    folder: str | Path,
    store: PinnedChromaVectorStore,
    embed_model: LLaRAEmbedding,
    record: Path,
    lexical: Path,
    config: IngestConfig | None = None,
    location: str = "the store",
    writer: ChunkWriter | None = None,
) -> IngestSummary:
    """Brings ``store`` up to date with ``folder``; ``record`` is the docstore file of this collection,
    ``lexical`` the folder of its lexical index, ``location`` where the collection lives (for messages),
    ``writer`` what embeds and writes the chunks (default: this process, ``chunks_per_batch`` at a time)."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    config = config or IngestConfig()
    writer = writer or LocalWriter(store, embed_model, config.chunks_per_batch)
    root = Path(folder).resolve()
    files = find_documents(root, config)
    previous = check_chunking(store.collection, config, location)
    docstore = load_docstore(record)
    splitter = build_splitter(embed_model, config)
    if previous is not None:
        logger.warning(
            "Re-chunking the documents of %r: %s instead of %s",
            store.collection.name,
            chunking_flags(config.chunking),
            chunking_flags(previous),
        )
    if recorded_chunking(store.collection) != config.chunking:
        if previous is None and store.collection.count():
            logger.warning(
                "Collection %r was indexed before chunk settings were recorded; recording %s. If its "
                "documents were cut otherwise, run again with --rechunk to re-split them.",
                store.collection.name,
                chunking_flags(config.chunking),
            )
        update_metadata(
            store.collection, {CHUNKING_KEYS[field]: value for field, value in config.chunking.items()}
        )
    summary = IngestSummary()
    revision = Revision(store)
    seen: set[str] = set()
    extractors = file_extractors()
    with (
        logging_redirect_tqdm(),
        tqdm(total=len(files), desc=f"Indexing {root.name}", unit="file") as file_bar,
        tqdm(total=0, desc="Embedding", unit="chunk", delay=1) as chunk_bar,
    ):
        progress = Progress(file_bar, chunk_bar)
        for start in range(0, len(files), config.documents_per_batch):
            batch = files[start : start + config.documents_per_batch]
            documents: list[Document] = []
            for path in batch:
                read = read_file(path, config.max_file_bytes, extractors, root)
                if isinstance(read, str):
                    summary.skipped.append(Skip(name=shown(path), reason=read))
                    logger.info("Skipped %s: %s", shown(path), read)
                else:
                    for document in read:
                        document.excluded_embed_metadata_keys = list(config.hidden_from_encoder)
                        document.excluded_llm_metadata_keys = list(HIDDEN_FROM_MODELS)
                    documents.extend(read)
            seen.update(document.id_ for document in documents)
            versions = {document.id_: document_version(document, config) for document in documents}
            stale = _classify(documents, versions, docstore, summary, config.rechunk)
            if stale:
                _write(stale, versions, store, splitter, writer, summary, revision, progress)
            changed = {
                document.id_: versions[document.id_]
                for document in documents
                if docstore.get_document_hash(document.id_) != versions[document.id_]
            }
            if changed:
                docstore.set_document_hashes(changed)
                save_docstore(docstore, record)
            progress.read(len(batch), summary)
    _prune(
        root,
        seen,
        {skip.name for skip in summary.skipped},
        store,
        docstore,
        record,
        config,
        summary,
        revision,
    )
    stamp = LexicalIndex.read_stamp(lexical)
    if revision.started or not is_current(stamp, store.collection) or not has_words(lexical, stamp):
        rebuild(store, lexical)
    return summary


def _classify(
    documents: Sequence[Document],
    versions: dict[str, str],
    docstore: SimpleDocumentStore,
    summary: IngestSummary,
    rechunk: bool,
) -> list[Document]:
    """Sorts a batch into added / updated / unchanged by the recorded version; returns those to write.

    A record holding the bare document hash predates versions: it is taken as cut with the current
    settings (its record is upgraded without writing anything), unless ``rechunk`` says otherwise.
    """
    stale = []
    for document in documents:
        recorded = docstore.get_document_hash(document.id_)
        if recorded is None:
            summary.added.append(document.id_)
            stale.append(document)
        elif recorded == versions[document.id_] or (recorded == document.hash and not rechunk):
            summary.unchanged.append(document.id_)
        else:
            summary.updated.append(document.id_)
            stale.append(document)
    return stale


def _write(
    documents: Sequence[Document],
    versions: dict[str, str],
    store: PinnedChromaVectorStore,
    splitter: SentenceSplitter,
    writer: ChunkWriter,
    summary: IngestSummary,
    revision: Revision,
    progress: Progress,
) -> None:
    """Writes the chunks of ``documents`` over their old ones, a batch at a time, then deletes the old ones
    past the new end; chunks of the current version already there (from a killed run) are kept."""
    nodes = splitter.get_nodes_from_documents(documents)
    for node in nodes:
        node.metadata[VERSION_KEY] = versions[node.ref_doc_id or ""]
    ids = sorted(document.id_ for document in documents)
    existing = store.collection.get(where={"document_id": {"$in": ids}}, include=["metadatas"])
    kept = {
        chunk
        for chunk, metadata in zip(existing["ids"], existing["metadatas"] or [])
        if metadata.get(VERSION_KEY) == versions.get(str(metadata.get("document_id")))
    }
    pending = [node for node in nodes if node.node_id not in kept]
    progress.planned(len(nodes), len(nodes) - len(pending))
    if pending:
        revision.before_write()

        def written(count: int) -> None:
            summary.chunks_written += count
            progress.written(count)

        writer.write(pending, written)
    past_the_end = sorted(set(existing["ids"]) - {node.node_id for node in nodes})
    if past_the_end:
        revision.before_write()
        store.collection.delete(ids=past_the_end)


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
    writer: ChunkWriter | None = None,
) -> IngestSummary:
    """Opens (creating if needed) the collection of ``store_config`` and brings it up to date with ``folder``.

    The folder and the chunk settings are checked first (:func:`check_before_loading`), so a run that
    would be refused creates no database. ``writer``: see :func:`ingest_folder`.
    """
    config = config or IngestConfig()
    check_before_loading(folder, store_config, config)
    store = open_store(store_config, embed_model)
    return ingest_folder(
        folder,
        store,
        embed_model,
        docstore_path(store_config, store),
        lexical_folder(store_config, store.collection),
        config,
        store_config.location,
        writer,
    )
