"""Dynamic batching: the texts of concurrent embedding requests share encoder calls.

One request of a few texts leaves most of an encoder batch empty; many clients embedding at once would
each pay a forward pass. :class:`EmbeddingBatcher` queues requests and hands the encoder everything
that arrived within a short window of the first, one call per side (queries and passages take
different prompts). A single worker calls the encoder, so the model never runs twice at once.

The window is a tenth of the last encoder call, capped at ``max_wait``: waiting then costs a request at
most ~10 % of its own encoding, on a CPU (calls of seconds: the cap) as on a GPU (calls of milliseconds).
On this CPU, 16 clients reached 79 % of in-process throughput with a fixed 5 ms window and 83 % with
50 ms (``benchmarks/results/serve.md``): requests answered together come back a few ms apart.

Sharing a call must not share its failure: when a call of several requests fails, each is encoded again
alone, so only the request that cannot be encoded receives the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from llara_rag.encoding.prompts import Side

logger = logging.getLogger(__name__)

SIDES: tuple[Side, ...] = ("query", "passage")
WAIT_SHARE = 0.1
"""The batching window as a share of the last encoder call's duration."""


@dataclass
class _Request:
    texts: list[str]
    side: Side
    result: asyncio.Future[np.ndarray]


class EmbeddingBatcher:
    """Groups the texts of requests arriving within the window (up to ``max_batch`` texts): a tenth of the
    last encoder call, at most ``max_wait`` seconds (the whole ``max_wait`` before the first call).

    ``encode(texts, side)`` runs in a worker thread, off the event loop; ``calls`` counts its calls.
    """

    def __init__(
        self,
        encode: Callable[[Sequence[str], Side], np.ndarray],
        *,
        max_batch: int = 64,
        max_wait: float = 0.05,
    ) -> None:
        self.encode = encode
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.calls = 0
        self._last_call: float | None = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def embed(self, texts: Sequence[str], side: Side) -> np.ndarray:
        """The vectors of ``texts`` (one row each, in order), encoded with other requests' texts."""
        queue = self._started()
        request = _Request(list(texts), side, asyncio.get_running_loop().create_future())
        await queue.put(request)
        return await request.result

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = self._queue = None

    def _started(self) -> asyncio.Queue[_Request]:
        """The queue of the running event loop, with its worker (a test client may run a new loop)."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker is None or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(self._queue), name="llara-rag-embedding-batcher")
        return self._queue

    async def _work(self, queue: asyncio.Queue[_Request]) -> None:
        while True:
            batch = await self._collect(queue)
            for side in SIDES:
                waiting = [request for request in batch if request.side == side and not request.result.done()]
                if waiting:
                    await self._encode(waiting, side)

    async def _collect(self, queue: asyncio.Queue[_Request]) -> list[_Request]:
        """The first request waited for, then whatever else arrives within the window after it."""
        batch = [await queue.get()]
        size = len(batch[0].texts)
        window = (
            self.max_wait if self._last_call is None else min(self.max_wait, WAIT_SHARE * self._last_call)
        )
        deadline = asyncio.get_running_loop().time() + window
        while size < self.max_batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                request = await asyncio.wait_for(queue.get(), left)
            except asyncio.TimeoutError:
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _encode(self, requests: list[_Request], side: Side) -> None:
        texts = [text for request in requests for text in request.texts]
        started = asyncio.get_running_loop().time()
        try:
            vectors = await asyncio.to_thread(self.encode, texts, side)
        except Exception as error:  # noqa: BLE001 - a lone request receives it; others are retried alone
            if len(requests) > 1:
                logger.warning(
                    "An encoder call of %d requests failed (%s); encoding each alone", len(requests), error
                )
                for request in requests:
                    await self._encode([request], side)
            elif not requests[0].result.done():
                requests[0].result.set_exception(error)
            return
        self.calls += 1
        self._last_call = asyncio.get_running_loop().time() - started
        logger.debug("Encoded %d %s texts for %d requests", len(texts), side, len(requests))
        start = 0
        for request in requests:
            if not request.result.done():
                request.result.set_result(vectors[start : start + len(request.texts)])
            start += len(request.texts)
