"""Encoding on several devices at once: one worker process per device, each with its own copy of the model.

As sentence-transformers' multi-process pool does: torch's ``spawn`` processes (CUDA cannot be forked), the
texts of a call cut into contiguous shards that whichever worker is free takes, the vectors put back in
input order. Processes rather than threads, because one process drives one device best and the GIL
would serialise the tokenisation. A worker that dies makes the call fail naming its device; the pool is
closed, nothing was written, and the same call on a new pool starts afresh.
"""

from __future__ import annotations

import logging
import math
import queue
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llara_rag.errors import LLaRAError

if TYPE_CHECKING:
    from llara_rag.encoding.prompts import Side

logger = logging.getLogger(__name__)

SHARDS_PER_WORKER = 4
"""Shards a call is cut into per worker: enough that a fast device takes more of them than a slow one."""
POLL_SECONDS = 1.0


class EncoderWorkerError(LLaRAError):
    """A worker process of an :class:`EncoderPool` died or failed."""


def _work(build: Callable[[], Any], threads: int | None, tasks: Any, results: Any) -> None:
    """A worker's loop: build its encoder (on its device, with ``threads`` CPU threads when given), then
    encode shards until told to stop (None)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    encoder = build()
    results.put(("ready", None))
    while (task := tasks.get()) is not None:
        index, texts, side = task
        try:
            results.put((index, encoder.encode(texts, side, show_progress=False)))
        except Exception as error:  # noqa: BLE001 - reported to the caller, which raises it
            results.put((index, f"{type(error).__name__}: {error}"))


class EncoderPool:
    """One worker process per device; ``builds[i]()`` makes worker i's encoder (anything with
    ``encode(texts, side, show_progress=...)``), and must pickle: it crosses into a spawned process."""

    def __init__(self, builds: Sequence[Callable[[], Any]], devices: Sequence[str], batch_size: int) -> None:
        import torch
        import torch.multiprocessing as mp

        context = mp.get_context("spawn")
        # CPU workers share the cores this process has instead of each taking them all.
        cpu_workers = sum(device == "cpu" for device in devices)
        threads = max(1, torch.get_num_threads() // cpu_workers) if cpu_workers else None
        self.devices = list(devices)
        self.batch_size = batch_size
        self.tasks = context.Queue()
        self.results = context.Queue()
        self.workers = [
            context.Process(
                target=_work,
                args=(build, threads if device == "cpu" else None, self.tasks, self.results),
                name=f"llara-rag-encoder-{device}",
                daemon=True,
            )
            for build, device in zip(builds, self.devices)
        ]
        for worker in self.workers:
            worker.start()
        self._ready = 0
        logger.info("Encoder pool: %d workers on %s", len(self.workers), ", ".join(self.devices))

    def encode(self, texts: Sequence[str], side: Side) -> np.ndarray:
        """The vectors of ``texts``, in order, as one encoder would give them."""
        from tqdm.auto import tqdm

        size = max(self.batch_size, math.ceil(len(texts) / (SHARDS_PER_WORKER * len(self.workers))))
        shards = [list(texts[start : start + size]) for start in range(0, len(texts), size)]
        for index, shard in enumerate(shards):
            self.tasks.put((index, shard, side))
        done: dict[int, np.ndarray] = {}
        with tqdm(total=len(texts), desc=f"Encoding on {len(self.workers)} devices", unit="text") as bar:
            while len(done) < len(shards):
                index, payload = self._next_result()
                if isinstance(payload, str):
                    self.close()
                    raise EncoderWorkerError(f"An encoder worker failed on shard {index}: {payload}")
                done[index] = payload
                bar.update(len(payload))
        return np.concatenate([done[index] for index in range(len(shards))])

    def _next_result(self) -> tuple[int, Any]:
        """The next shard's result; a worker found dead while waiting fails the call, naming its device."""
        while True:
            try:
                key, payload = self.results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                dead = [(device, w) for device, w in zip(self.devices, self.workers) if not w.is_alive()]
                if dead:
                    self.close()
                    device, worker = dead[0]
                    raise EncoderWorkerError(
                        f"The encoder worker on {device} stopped (exit code {worker.exitcode}) before its "
                        "shards were done; nothing was written. Run the same command again (out of memory? "
                        "lower --batch-size or use fewer devices)."
                    ) from None
                continue
            if key == "ready":
                self._ready += 1
                continue
            return key, payload

    def close(self) -> None:
        """Stops the workers: each finishes its shard, then exits; one that does not is terminated."""
        for _ in self.workers:
            self.tasks.put(None)
        for worker in self.workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
        self.workers = []
