"""Indexing on a Ray cluster: chunks embedded and written by one encoder actor per worker.

The driver does what ``llara-rag index`` does (lists and reads the folder, cuts chunks, keeps the record of
what is indexed and rebuilds the lexical index); each actor loads its own encoder (on its GPU, or on its
CPUs) and upserts the chunks it embedded straight into the Chroma server collection through the same
pinned store code, so no vector passes through the driver. Ray actors rather than Ray Data: an actor keeps
its model loaded for the whole run, while each ``map_batches`` would load it again for every batch of
documents the driver reads.

Chunk ids are stable and writes are upserts, so a run stopped by a worker that died is re-run and
finishes the job: chunks already written are kept, none is written twice (see :mod:`llara_rag.indexing.ingest`).
Every node must see the model and adapter at the paths the driver gives (the same image, or a shared
file system); an actor whose encoder is not the collection's refuses to write.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from llara_rag.encoding.encoder import EncoderConfig, LLaRAEncoder
from llara_rag.encoding.pool import EncoderWorkerError
from llara_rag.errors import InvalidInputError, LLaRAError, ModelMismatchError
from llara_rag.extras import require
from llara_rag.indexing.ingest import IngestConfig, IngestSummary, index_folder
from llara_rag.indexing.store import ModelIdentity, PinnedChromaVectorStore, StoreConfig, open_store
from llara_rag.settings import UserSettings

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

    from llara_rag.encoding.embedding import LLaRAEmbedding

logger = logging.getLogger(__name__)

RAY = "ray"
"""The extra that installs Ray."""


class RayConfig(UserSettings):
    """Where the encoder actors run and what each one holds."""

    workers: int = Field(default=2, gt=0, description="Encoder actors, each with its own copy of the model.")
    gpus_per_worker: float = Field(
        default=0, ge=0, description="GPUs an actor reserves; 0 runs it on CPUs (1 GPU each for a 7B model)."
    )
    cpus_per_worker: float = Field(default=1, gt=0, description="CPUs an actor reserves.")
    address: str | None = Field(
        default=None,
        description="The cluster to join ('auto', 'ray://head:10001'); None joins the one this process "
        "belongs to, or starts a local one.",
    )


class ChunkEncoder:
    """A Ray actor: one encoder on the actor's device, writing into the pinned collection.

    Both are opened on the first call rather than in ``__init__``, so a failure (a model a node cannot
    find, a server it cannot reach, other weights than the collection's) reaches the driver as the error it is.
    """

    def __init__(self, encoder: EncoderConfig, store: StoreConfig, identity: ModelIdentity) -> None:
        self.settings = (encoder, store, identity)
        self.opened: tuple[LLaRAEncoder, PinnedChromaVectorStore] | None = None

    def open(self) -> tuple[LLaRAEncoder, PinnedChromaVectorStore]:
        if self.opened is None:
            config, store, identity = self.settings
            encoder = LLaRAEncoder(config)
            if encoder.fingerprint != identity.fingerprint:
                raise ModelMismatchError(
                    f"A Ray worker loaded {encoder.describe()}, not the collection's encoder "
                    f"{identity.describe()}: every node must see the same model and adapter files."
                )
            self.opened = encoder, open_store(store, identity, create=False)
        return self.opened

    def write(self, nodes: list[BaseNode]) -> int:
        """Embeds ``nodes`` as ``LLaRAEmbedding`` does (metadata the encoder may see included) and upserts them."""
        from llama_index.core.schema import MetadataMode

        encoder, store = self.open()
        texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        vectors = encoder.encode_passages(texts, show_progress=False)
        for node, vector in zip(nodes, vectors):
            node.embedding = vector.tolist()
        store.upsert(nodes)
        return len(nodes)


class RayWriter:
    """Hands the chunks of each batch of documents to the actors, split evenly, at most ``batch_size`` a call.

    The actors start on the first write, so a run that finds nothing to embed loads no model.
    """

    def __init__(
        self,
        config: RayConfig,
        encoder: EncoderConfig,
        store: StoreConfig,
        identity: ModelIdentity,
        batch_size: int,
    ) -> None:
        device = "cuda" if config.gpus_per_worker else "cpu"
        self.config = config
        self.arguments = (encoder.model_copy(update={"device": device, "devices": None}), store, identity)
        self.batch_size = batch_size
        self.actors: list[Any] = []

    def start(self) -> list[Any]:
        """The actors, started if they are not yet."""
        import ray

        if not self.actors:
            if not ray.is_initialized():
                ray.init(address=self.config.address, include_dashboard=False, log_to_driver=False)
            logger.info(
                "Embedding with %d Ray workers (%s GPU, %s CPU each)",
                self.config.workers,
                self.config.gpus_per_worker,
                self.config.cpus_per_worker,
            )
            actor = ray.remote(num_cpus=self.config.cpus_per_worker, num_gpus=self.config.gpus_per_worker)(
                ChunkEncoder
            )
            self.actors = [actor.remote(*self.arguments) for _ in range(self.config.workers)]
        return self.actors

    def write(self, nodes: Sequence[BaseNode], written: Callable[[int], None]) -> None:
        from ray.util import ActorPool

        actors = self.start()
        size = min(self.batch_size, math.ceil(len(nodes) / len(actors)))
        batches = [list(nodes[start : start + size]) for start in range(0, len(nodes), size)]
        with _worker_errors():
            for count in ActorPool(actors).map_unordered(lambda a, batch: a.write.remote(batch), batches):
                written(count)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


@contextmanager
def _worker_errors() -> Iterator[None]:
    """Ray's errors as llara-rag's: a worker's own error as itself, a dead worker as one that says to re-run."""
    from ray.exceptions import RayActorError, RayTaskError

    try:
        yield
    except RayTaskError as error:
        if isinstance(error.cause, LLaRAError):
            raise error.cause from None
        raise
    except RayActorError as error:
        raise EncoderWorkerError(
            f"A Ray encoder worker died before its chunks were written ({error}). The chunks written so far "
            "are kept: run the same command again to finish (out of memory? fewer workers, or a lower "
            "chunks_per_batch)."
        ) from None


def index_with_ray(
    folder: str | Path,
    store_config: StoreConfig,
    embed_model: LLaRAEmbedding,
    config: IngestConfig | None = None,
    ray_config: RayConfig | None = None,
) -> IngestSummary:
    """``index_folder`` with the embedding and writing done by Ray actors into a Chroma server collection.

    The driver loads ``embed_model`` too, for the chunker's tokenizer and the collection's pin. The first
    chunk to write joins the cluster of ``ray_config.address`` unless Ray is already initialised (and
    leaves it initialised): a run with bad input or nothing to embed starts no Ray.
    """
    require("ray", RAY)
    config = config or IngestConfig()
    ray_config = ray_config or RayConfig()
    if not store_config.is_server:
        raise InvalidInputError(
            f"Indexing with Ray writes from every worker into one collection: {store_config.location} is an "
            "embedded database, which one process owns. Start a Chroma server (`chroma run --path DIR`) and "
            "pass its URL as the store (--server)."
        )
    writer = RayWriter(
        ray_config,
        embed_model.encoder_config,
        store_config,
        ModelIdentity.of(embed_model),
        config.chunks_per_batch,
    )
    try:
        return index_folder(folder, store_config, embed_model, config, writer)
    finally:
        writer.close()
