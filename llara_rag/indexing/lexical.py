"""The lexical side: BM25 exactly as ``eval`` measures it, and the BM25 index kept with each collection.

Chroma's own sparse and BM25 search (``Collection.search``) exists only on distributed and hosted
Chroma; the embedded database and a ``chroma run`` server raise ``NotImplementedError``. So each
collection gets a bm25s index in the folder of its ingestion record (:meth:`StoreConfig.docstore_folder`),
one per collection instance, like the record itself.

Keeping it in step: the index is rebuilt from the chunk texts Chroma holds, so it has the same ids and
texts by construction. Before an ``index`` run first writes to a collection it stamps the collection
with a new *revision*; after its last write it rebuilds the index and saves it with that revision and
the chunk count. A run killed anywhere leaves either a stale stamp (the next run rebuilds, a query
refuses the index and names the fix) or a complete index; never a mix. Rebuilding reads every chunk
text back from Chroma; BM25 over 5,000 chunks of 180 words builds in about a second (2 busy CPU cores).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Container, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from llara_rag.errors import LexicalIndexError
from llara_rag.extras import STORE, require
from llara_rag.indexing.spelling import Speller

if TYPE_CHECKING:
    import bm25s
    from chromadb.api.models.Collection import Collection

    from llara_rag.indexing.store import PinnedChromaVectorStore, StoreConfig

logger = logging.getLogger(__name__)

BM25_K1 = 1.2
BM25_B = 0.75
STEMMER = "english"
STOPWORDS = "en"
REVISION_KEY = "llara:lexical-revision"
"""Collection metadata: the revision of the collection's chunks the lexical index must have been built for."""
FOLDER_SUFFIX = ".lexical"
STAMP_FILE = "current.json"
IDS_FILE = "ids.json"
WORDS_FILE = "words.json"
"""The collection's words and counts, which queries are spelling-corrected against (:mod:`.spelling`)."""


def _bm25s() -> ModuleType:
    """bm25s, imported when needed (it is slow to import) and with its DEBUG logging turned down."""
    bm25s = require("bm25s", STORE)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def tokenize(texts: Sequence[str]) -> bm25s.tokenization.Tokenized:
    """Lower-cased words, English stop words removed, Snowball-stemmed: the same for documents and queries."""
    stemmer = require("Stemmer", STORE).Stemmer(STEMMER)
    return _bm25s().tokenize(list(texts), stopwords=STOPWORDS, stemmer=stemmer, show_progress=False)


def build_bm25(texts: Sequence[str], k1: float = BM25_K1, b: float = BM25_B) -> bm25s.BM25:
    index = _bm25s().BM25(k1=k1, b=b)
    index.index(tokenize(texts), show_progress=False)
    return index


def bm25_top(
    index: bm25s.BM25,
    ids: Sequence[str],
    queries: Sequence[str],
    depth: int,
    mask: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """The ``depth`` best documents of each query; documents sharing no term with it are not retrieved.

    ``mask`` (1 or 0 per document) leaves documents out, e.g. those a metadata filter excludes.
    """
    indices, scores = index.retrieve(
        tokenize(queries), k=min(depth, len(ids)), show_progress=False, weight_mask=mask
    )
    return [
        {ids[i]: float(s) for i, s in zip(row_indices, row_scores) if s > 0}
        for row_indices, row_scores in zip(indices, scores)
    ]


class LexicalStamp(BaseModel):
    """What a saved index was built from: checked against the collection before it is used."""

    revision: str
    count: int
    build: str
    k1: float
    b: float


class LexicalIndex:
    """BM25 over a collection's chunk texts, addressed by chunk id."""

    def __init__(
        self,
        ids: Sequence[str],
        bm25: bm25s.BM25 | None,
        stamp: LexicalStamp,
        speller: Speller | None = None,
    ) -> None:
        self.ids = list(ids)
        self.bm25 = bm25
        self.stamp = stamp
        self.speller = speller
        """The collection's words for spelling correction; None for an index built before they were kept."""

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str], revision: str) -> LexicalIndex:
        stamp = LexicalStamp(revision=revision, count=len(ids), build=uuid.uuid4().hex, k1=BM25_K1, b=BM25_B)
        return cls(ids, build_bm25(texts) if ids else None, stamp, Speller.from_texts(texts))

    def search(self, query: str, depth: int, allowed: Container[str] | None = None) -> dict[str, float]:
        """Chunk id -> BM25 score of the ``depth`` best chunks (only ``allowed`` ones, when given)."""
        if self.bm25 is None:
            return {}
        mask = None
        if allowed is not None:
            mask = np.fromiter(
                (chunk in allowed for chunk in self.ids), dtype=np.float32, count=len(self.ids)
            )
        return bm25_top(self.bm25, self.ids, [query], depth, mask)[0]

    def idf(self, term: str) -> float:
        """How rare a BM25 term (stemmed, as :func:`tokenize` gives it) is across the collection's chunks,
        ``log(1 + (N + 1) / (1 + df))``: a term no chunk holds weighs most."""
        frequency = 0
        if self.bm25 is not None and (index := self.bm25.vocab_dict.get(term)) is not None:
            pointers = self.bm25.scores["indptr"]  # one column per term (the empty token has none)
            frequency = int(pointers[index + 1] - pointers[index]) if index + 1 < len(pointers) else 0
        return math.log(1 + (len(self.ids) + 1) / (1 + frequency))

    def save(self, folder: Path) -> None:
        """Writes a new build folder, then switches the stamp to it in one rename, then drops older builds.

        A kill at any point leaves the stamp naming a complete build: the old one or this one.
        """
        folder.mkdir(parents=True, exist_ok=True)
        build = folder / self.stamp.build
        build.mkdir()
        (build / IDS_FILE).write_text(json.dumps(self.ids), encoding="utf-8")
        if self.bm25 is not None:
            self.bm25.save(str(build), show_progress=False)
        if self.speller is not None:
            self.speller.save(build / WORDS_FILE)
        partial = folder / f"{STAMP_FILE}.partial"
        partial.write_text(self.stamp.model_dump_json(), encoding="utf-8")
        os.replace(partial, folder / STAMP_FILE)
        for entry in folder.iterdir():
            if entry.is_dir() and entry.name != self.stamp.build:
                shutil.rmtree(entry, ignore_errors=True)

    @staticmethod
    def read_stamp(folder: Path) -> LexicalStamp | None:
        """The stamp; None when there is none or it is unreadable: the next ``index`` run rebuilds both."""
        path = folder / STAMP_FILE
        if not path.exists():
            return None
        try:
            return LexicalStamp.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            logger.warning(
                "Ignoring the unreadable lexical index stamp %s: %s", path, str(error).splitlines()[0]
            )
            return None

    @classmethod
    def load(cls, folder: Path, stamp: LexicalStamp) -> LexicalIndex:
        build = folder / stamp.build
        ids = json.loads((build / IDS_FILE).read_text(encoding="utf-8"))
        bm25 = _bm25s().BM25.load(str(build), show_progress=False) if ids else None
        words = build / WORDS_FILE
        return cls(ids, bm25, stamp, Speller.load(words) if words.is_file() else None)


def lexical_folder(config: StoreConfig, collection: Collection) -> Path:
    """Beside the ingestion record, one per collection instance (a re-created collection starts afresh)."""
    return config.collection_file(collection, FOLDER_SUFFIX)


def collection_revision(collection: Collection) -> str | None:
    return (collection.metadata or {}).get(REVISION_KEY)


def start_revision(collection: Collection) -> str:
    """Stamps the collection as changed since its lexical index was built; call before writing to it."""
    from llara_rag.indexing.store import update_metadata

    revision = uuid.uuid4().hex
    update_metadata(collection, {REVISION_KEY: revision})
    return revision


def is_current(stamp: LexicalStamp | None, collection: Collection) -> bool:
    """Whether a saved index was built from the collection as it is now (its revision and chunk count)."""
    return (
        stamp is not None
        and stamp.revision == collection_revision(collection)
        and stamp.count == collection.count()
    )


def has_words(folder: Path, stamp: LexicalStamp | None) -> bool:
    """Whether the saved build keeps the collection's words (builds made before spelling correction do not)."""
    return stamp is not None and (folder / stamp.build / WORDS_FILE).is_file()


def rebuild(store: PinnedChromaVectorStore, folder: Path) -> LexicalIndex:
    """Builds the index from every chunk text in the collection, for its current revision, and saves it."""
    collection = store.collection
    revision = collection_revision(collection) or start_revision(collection)
    ids: list[str] = []
    texts: list[str] = []
    total = collection.count()
    for offset in range(0, total, store.max_batch_size):
        page = collection.get(include=["documents"], limit=store.max_batch_size, offset=offset)
        ids.extend(page["ids"])
        texts.extend(text or "" for text in page["documents"] or [])
    index = LexicalIndex.build(ids, texts, revision)
    index.save(folder)
    logger.info("Lexical index of %r rebuilt: %d chunks", collection.name, len(ids))
    return index


def open_lexical_index(config: StoreConfig, collection: Collection) -> LexicalIndex:
    """The collection's saved lexical index, refused with the way out when it is missing or out of step."""
    folder = lexical_folder(config, collection)
    stamp = LexicalIndex.read_stamp(folder)
    rerun = (
        f"`llara-rag index` on its documents folder (same {'--server' if config.is_server else '--db'} and "
        "--collection; unchanged files are not embedded again)"
    )
    name, where = config.collection, config.location
    if stamp is None and config.is_server:
        raise LexicalIndexError(
            f"Collection {name!r} in {where} has no lexical (BM25) index on this machine ({folder}), which "
            "--mode hybrid and --mode lexical need; a server's lexical index is kept by the machine that "
            f"indexes, so run {rerun} there and copy the folder it writes to {folder}, or query with "
            "--mode dense."
        )
    if stamp is None:
        raise LexicalIndexError(
            f"Collection {name!r} in {where} has no lexical (BM25) index, which --mode hybrid and --mode "
            f"lexical need; run {rerun} to build it in {folder}, or query with --mode dense."
        )
    if not is_current(stamp, collection):
        raise LexicalIndexError(
            f"The lexical index of collection {name!r} in {where} does not match the collection (an "
            "`llara-rag index` run was interrupted or is under way, or another program wrote to it); "
            f"run {rerun} again to rebuild it."
        )
    try:
        return LexicalIndex.load(folder, stamp)
    except FileNotFoundError as error:  # an `index` run replaced this build between the stamp and its files
        raise LexicalIndexError(
            f"The lexical index in {folder} was replaced while it was read ({error.filename}); "
            "run the query again."
        ) from error
    except (OSError, ValueError) as error:
        raise LexicalIndexError(
            f"The lexical index in {folder} is unreadable ({str(error).splitlines()[0][:200]}); delete "
            f"{folder / STAMP_FILE} and run {rerun} to rebuild it."
        ) from error
