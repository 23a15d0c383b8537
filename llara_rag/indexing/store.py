"""The vector store: one Chroma collection, embedded in a folder or on a server, pinned to one encoder.

``StoreConfig`` says where the collection lives; switching from the embedded database (a folder,
nothing to start) to a Chroma server is a matter of setting ``host``. ``open_store`` returns a
LlamaIndex ``ChromaVectorStore`` over a cosine-space collection whose metadata records the encoder
that wrote it — fingerprint, dimension and a readable description — when the collection is created.
Opening it with another encoder is refused: vectors of two models in one collection make every
similarity meaningless, and Chroma itself only notices when the dimensions happen to differ.

    store = open_store(StoreConfig(path="db"), embed_model)
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from llara_rag.encoding.adapter import DEFAULT, NONE, adapter_name
from llara_rag.errors import (
    CollectionNotFoundError,
    DamagedStoreError,
    InvalidInputError,
    ModelMismatchError,
    StoreConnectionError,
)
from llara_rag.extras import STORE, missing_extra, require
from llara_rag.settings import UserSettings

try:
    from llama_index.vector_stores.chroma import ChromaVectorStore
except ModuleNotFoundError as error:
    raise missing_extra("chromadb", STORE) from error

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from llama_index.core import VectorStoreIndex

    from llara_rag.encoding.embedding import LLaRAEmbedding

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "llara"
COLLECTION_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$"
"""Chroma's own rule (3-512 characters), checked up front so a bad name fails with our message."""
RECORD_SUFFIX_LENGTH = len("-00000000-0000-0000-0000-000000000000.json.partial")
"""What the longest of a collection's ingestion files adds to its name: ``NAME-ID.json.partial``."""
MAX_COLLECTION_NAME = 255 - RECORD_SUFFIX_LENGTH
"""Names beyond this are refused: the ingestion files named after them would exceed the 255 bytes a file
name may have on ext4, XFS, APFS and NTFS (Chroma alone would allow 512)."""
DOCSTORE_FOLDER = "llara-docstore"
DATABASE_FILE = "chroma.sqlite3"
"""The embedded database's file in its folder (Chroma's name)."""
PIN_KEYS = {
    "fingerprint": "llara:fingerprint",
    "dimension": "llara:dimension",
    "model": "llara:model",
    "adapter": "llara:adapter",
    "precision": "llara:precision",
}


class StoreConfig(UserSettings):
    """Where the collection lives: an embedded folder by default, a Chroma server when ``host`` is set.

    Invalid values are refused naming the flag (:mod:`llara_rag.settings`).
    """

    model_config = ConfigDict(frozen=True)

    path: Path = Field(
        default=Path("llara-db"),
        description="Folder of the embedded Chroma database (unused with a server).",
        json_schema_extra={"flag": "--db"},
    )
    collection: str = Field(
        default=DEFAULT_COLLECTION,
        pattern=COLLECTION_NAME_PATTERN,
        description="3 to 512 letters, digits, dots, dashes or underscores, starting and ending with a letter "
        f"or digit, without '..' and not an IP address (Chroma's rule), at most {MAX_COLLECTION_NAME} long "
        "(the file names llara-rag gives its records).",
        json_schema_extra={"flag": "--collection"},
    )
    host: str | None = Field(default=None, description="A Chroma server (`chroma run`); None: embedded.")
    port: int = Field(default=8000, gt=0, lt=65536)
    ssl: bool = False
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. an auth token for the server.")
    docstore_dir: Path | None = Field(
        default=None,
        description="Where ingestion records what it indexed; None: inside `path` when embedded, the "
        "user data folder for a server.",
    )

    @field_validator("collection")
    @classmethod
    def _name_chroma_and_files_accept(cls, name: str) -> str:
        """The rest of Chroma's rule, and a length every file system can hold, checked before anything is
        written (a name too long for a file name left a collection without its ingestion record)."""
        problem = None
        if ".." in name:
            problem = "holds '..', which Chroma refuses"
        elif _is_ip_address(name):
            problem = "is an IP address, which Chroma refuses as a name"
        elif len(name) > MAX_COLLECTION_NAME:
            problem = (
                f"is {len(name)} characters; the file names of its ingestion record would exceed the "
                f"255 a file system allows, so at most {MAX_COLLECTION_NAME}"
            )
        if problem:
            raise ValueError(f"--collection {name!r} {problem}; pass e.g. --collection {DEFAULT_COLLECTION}.")
        return name

    @classmethod
    def from_url(cls, url: str, **fields: Any) -> StoreConfig:
        """``http://host:port`` or ``https://host`` to a server config; other fields pass through."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            port = parts.port  # a port that is not a number, or out of range, raises here
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise InvalidInputError(f"Not a Chroma server URL: {url!r}; expected e.g. http://localhost:8000.")
        ssl = parts.scheme == "https"
        return cls(host=parts.hostname, port=port or (443 if ssl else 8000), ssl=ssl, **fields)

    @property
    def is_server(self) -> bool:
        return self.host is not None

    @property
    def location(self) -> str:
        """Where the collection lives, in the words an error message needs."""
        if self.is_server:
            return f"the Chroma server at {'https' if self.ssl else 'http'}://{self.host}:{self.port}"
        return f"the database folder {self.path}"

    def docstore_folder(self) -> Path:
        """The folder of ingestion records.

        Embedded: inside the database folder, so copying or deleting the folder takes the record along.
        Server: the server holds vectors only, and what a record describes — which files of *this*
        machine went in, and their hashes — belongs to the machine that indexes, so it lives in the
        user data folder, one sub-folder per server.
        """
        if self.docstore_dir is not None:
            return self.docstore_dir
        if not self.is_server:
            return self.path / DOCSTORE_FOLDER
        import platformdirs

        return Path(platformdirs.user_data_dir("llara-rag")) / DOCSTORE_FOLDER / f"{self.host}-{self.port}"

    def collection_file(self, collection: Collection, suffix: str) -> Path:
        """A file (or folder) kept beside ``collection``: one per collection *instance*, so a collection
        deleted and re-created under the same name starts afresh instead of meeting its old files."""
        return self.docstore_folder() / f"{collection.name}-{collection.id}{suffix}"


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ModelIdentity(BaseModel):
    """The encoder a collection is pinned to: the fingerprint decides, model and adapter explain."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    dimension: int = Field(gt=0)
    model: str = Field(description="The backbone as given on the command line (--model).")
    adapter: str | None = Field(default=None, description="The adapter directory as given (--adapter).")
    precision: Literal["int8"] | None = Field(
        default=None,
        description="int8 where the collection was indexed at int8, else None: said, not enforced (queries at "
        "any precision search it).",
    )

    @classmethod
    def of(cls, embed_model: LLaRAEmbedding) -> ModelIdentity:
        encoder = embed_model.encoder
        return cls(
            fingerprint=encoder.fingerprint,
            dimension=encoder.dimension,
            model=encoder.config.model,
            adapter=adapter_name(encoder.config.adapter),
            precision="int8" if encoder.precision == "int8" else None,
        )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> ModelIdentity | None:
        """Reads the pin; Chroma metadata cannot hold None, so "no adapter" is stored as ''."""
        metadata = metadata or {}
        if PIN_KEYS["fingerprint"] not in metadata:
            return None
        values = {field: metadata.get(key) for field, key in PIN_KEYS.items()}
        return cls(
            **{**values, "adapter": values["adapter"] or None, "precision": values["precision"] or None}
        )

    def to_metadata(self) -> dict[str, str | int]:
        return {key: getattr(self, field) or "" for field, key in PIN_KEYS.items()}

    @property
    def options(self) -> str:
        """The command-line options that select this encoder."""
        if self.adapter is None:
            return f"--model {self.model} --adapter {NONE}"
        return f"--model {self.model}" + ("" if self.adapter == DEFAULT else f" --adapter {self.adapter}")

    def describe(self) -> str:
        if self.adapter is None:
            adapter = " without adapter"
        elif self.adapter == DEFAULT:
            adapter = " + the shipped default adapter"
        else:
            adapter = f" + adapter {self.adapter}"
        precision = " at int8" if self.precision else ""
        return f"{self.model}{adapter}{precision} ({self.dimension}-d, fingerprint {self.fingerprint})"


class PinnedChromaVectorStore(ChromaVectorStore):
    """A ``ChromaVectorStore`` that knows its encoder and writes in batches its client accepts.

    Chroma refuses a write larger than ``client.get_max_batch_size()`` (5,461 records for the
    embedded database); LlamaIndex's own split is a fixed, larger constant.
    """

    _identity: ModelIdentity = PrivateAttr()
    _max_batch_size: int = PrivateAttr()

    def __init__(self, collection: Collection, identity: ModelIdentity, max_batch_size: int) -> None:
        super().__init__(chroma_collection=collection, collection_name=collection.name)
        self._identity = identity
        self._max_batch_size = max_batch_size

    @property
    def collection(self) -> Collection:
        return self._collection

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(nodes), self.max_batch_size):
            ids.extend(super().add(list(nodes[start : start + self.max_batch_size]), **add_kwargs))
        return ids

    def upsert(self, nodes: Sequence[BaseNode]) -> None:
        """Writes ``nodes`` as ``add`` does, but over records with the same ids (``add`` keeps the old
        record): ingestion rewrites a changed document's chunks in place, so it never goes without chunks."""
        for start in range(0, len(nodes), self.max_batch_size):
            batch = nodes[start : start + self.max_batch_size]
            metadatas = [
                node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
                for node in batch
            ]
            self.collection.upsert(
                ids=[node.node_id for node in batch],
                embeddings=[node.get_embedding() for node in batch],
                metadatas=[
                    {key: "" if value is None else value for key, value in m.items()} for m in metadatas
                ],
                documents=[node.get_content(metadata_mode=MetadataMode.NONE) for node in batch],
            )


def connect(config: StoreConfig, *, create: bool = True) -> ClientAPI:
    """A Chroma client for ``config``, telemetry off; a server that does not answer is a clear error.

    Only writers (``create``) make the embedded database folder: a reader given a folder that does not
    exist is told so, instead of leaving an empty database behind.
    """
    chromadb = require("chromadb", STORE)
    from chromadb.config import Settings
    from chromadb.errors import InternalError

    settings = Settings(anonymized_telemetry=False)
    if not config.is_server:
        if config.path.exists() and not config.path.is_dir():
            raise InvalidInputError(
                f"--db {config.path} is a file, not a database folder; pass the folder `llara-rag index` "
                "wrote (or a new one to create)."
            )
        if not create and not config.path.is_dir():
            raise CollectionNotFoundError(
                f"No database folder {config.path}; index documents into it first with "
                f"`llara-rag index DOCS --db {config.path}`, or pass the --db that holds them."
            )
        config.path.mkdir(parents=True, exist_ok=True)
        try:
            return chromadb.PersistentClient(path=str(config.path), settings=settings)
        except InternalError as error:
            raise unopenable(config.path, error) from error
    try:
        return chromadb.HttpClient(
            host=config.host, port=config.port, ssl=config.ssl, headers=config.headers, settings=settings
        )
    except ValueError as error:
        raise StoreConnectionError(
            f"Cannot reach {config.location} ({error}). Start one with "
            f"`chroma run --path DIR --host {config.host} --port {config.port}`, check host, port and SSL, "
            "or leave the server out to use an embedded database folder."
        ) from error


def unopenable(folder: Path, error: Exception) -> DamagedStoreError:
    """Why Chroma could not open the database in ``folder``: read-only (it writes even to read), or damaged."""
    database = folder / DATABASE_FILE
    read_only = "readonly" in str(error) or any(
        path.exists() and not os.access(path, os.W_OK) for path in (folder, database)
    )
    if read_only:
        return DamagedStoreError(
            f"Cannot open the database folder {folder}: it is read-only ({error}), and Chroma writes to its "
            f"database even to read it. Make {folder} and {database} writable, or copy the folder somewhere "
            "writable and pass that as --db."
        )
    return DamagedStoreError(
        f"Cannot open the database file {database} ({error}): it is damaged or not a Chroma database. "
        f"Restore the folder {folder} from a backup, or move it aside and run `llara-rag index` again to "
        "rebuild it."
    )


def _get_collection(client: ClientAPI, config: StoreConfig) -> Collection:
    """The existing collection, unchecked; ``CollectionNotFoundError`` naming those there are otherwise."""
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(config.collection, embedding_function=None)
    except NotFoundError as error:
        names = sorted(c.name for c in client.list_collections()) or ["none"]
        raise CollectionNotFoundError(
            f"No collection {config.collection!r} in {config.location} (it holds: {', '.join(names)}). "
            "Index documents into it first with `llara-rag index DOCS`, or pick one with --collection."
        ) from error


def existing_collection(config: StoreConfig) -> Collection:
    """The collection readers will open, found (or refused) before a model loads; nothing is created."""
    return _get_collection(connect(config, create=False), config)


def find_collection(config: StoreConfig) -> Collection | None:
    """The collection if it exists (None otherwise), creating nothing; a server that does not answer fails."""
    try:
        return existing_collection(config)
    except CollectionNotFoundError:
        return None


def indexed_at_int8(collection: Collection | None) -> bool | None:
    """Whether ``collection``'s vectors were written at int8; None where there is none or it has no pin."""
    identity = ModelIdentity.from_metadata(collection.metadata) if collection is not None else None
    return None if identity is None else identity.precision == "int8"


def open_store(
    config: StoreConfig, model: LLaRAEmbedding | ModelIdentity, *, create: bool = True
) -> PinnedChromaVectorStore:
    """Opens (or, with ``create``, creates) the collection and checks it is pinned to ``model``.

    A new collection is created in cosine space and pinned to ``model``; an existing one must have been
    written by the same encoder (same fingerprint), else ``ModelMismatchError``. ``create=False`` is for
    readers: a collection (or database folder) that does not exist raises ``CollectionNotFoundError``
    instead of appearing empty.
    """
    identity = model if isinstance(model, ModelIdentity) else ModelIdentity.of(model)
    client = connect(config, create=create)
    if create:
        collection = client.get_or_create_collection(
            config.collection,
            metadata=identity.to_metadata(),
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
    else:
        collection = _get_collection(client, config)
    _check_pin(collection, identity, config)
    return PinnedChromaVectorStore(collection, identity, client.get_max_batch_size())


def update_metadata(collection: Collection, values: Mapping[str, str | int]) -> None:
    """Sets ``values`` in the collection's metadata, keeping the rest (Chroma replaces it as a whole)."""
    collection.modify(metadata={**(collection.metadata or {}), **values})


def _check_pin(collection: Collection, identity: ModelIdentity, config: StoreConfig) -> None:
    """Refuses a collection written by another encoder; pins one that predates pinning if it fits."""
    recorded = ModelIdentity.from_metadata(collection.metadata)
    if recorded is None:
        sample = collection.get(limit=1, include=["embeddings"])["embeddings"]
        if sample is not None and len(sample) and len(sample[0]) != identity.dimension:
            raise ModelMismatchError(
                f"Collection {config.collection!r} in {config.location} holds {len(sample[0])}-d vectors; "
                f"{identity.describe()} makes {identity.dimension}-d ones. Re-index into a new collection "
                "(--collection NEW) or open it with the model that wrote it."
            )
        if collection.count():
            logger.warning(
                "Collection %r holds %d vectors written without a model record; pinning it to %s",
                config.collection,
                collection.count(),
                identity.describe(),
            )
        update_metadata(collection, identity.to_metadata())
        return
    if recorded.fingerprint != identity.fingerprint:
        if (recorded.model, recorded.adapter) == (identity.model, identity.adapter):
            cause = (
                "the adapter's weights changed since (an upgrade of llara-rag replaces the shipped default "
                "adapter)"
            )
            if recorded.precision == "int8":
                cause = (
                    "the adapter's weights or the way int8 vectors are made changed since (an upgrade of "
                    "llara-rag replaces the shipped default adapter and may change int8's scheme)"
                )
            advice = (
                f"The same model and adapter now make other vectors: {cause}. Re-index the documents into a "
                "new collection (--collection NEW), or delete this one and index again."
            )
        else:
            advice = (
                f"Open it with the encoder that built it ({recorded.options}), or re-index into a new "
                "collection (--collection NEW)."
            )
        raise ModelMismatchError(
            f"Collection {config.collection!r} in {config.location} was indexed with {recorded.describe()}, "
            f"but it was opened with {identity.describe()}; vectors of different encoders cannot be "
            f"compared. {advice}"
        )


def open_index(config: StoreConfig, embed_model: LLaRAEmbedding) -> VectorStoreIndex:
    """The existing collection as a LlamaIndex index, ready for ``as_retriever`` or ``as_query_engine``."""
    from llama_index.core import VectorStoreIndex

    store = open_store(config, embed_model, create=False)
    return VectorStoreIndex.from_vector_store(store, embed_model=embed_model)


def parse_where(items: Iterable[str]) -> dict[str, str | int | float]:
    """``["file_name=a.txt", "year=2020"]`` to a filter dict; numbers become numbers to match numeric fields."""
    where: dict[str, str | int | float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"Filter {item!r} is not KEY=VALUE (e.g. file_name=notes.md).")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        where[key] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else text
    return where
