"""Encoding on several devices: two CPU worker processes give one process's vectors, in order; a dead worker
fails the call naming its device, and the same call then completes on a new pool."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from llara_rag.encoding.encoder import LLaRAEncoder
from llara_rag.encoding.pool import EncoderWorkerError
from llara_rag.ranking import load_collection


@pytest.fixture(scope="module")
def adi_texts(data_dir: Path) -> list[str]:
    return list(load_collection(data_dir / "adi").doc_texts)


def test_two_workers_encode_the_corpus_as_one_process(tiny_backbone_dir: Path, adi_texts: list[str]) -> None:
    single = LLaRAEncoder(model=str(tiny_backbone_dir), batch_size=8)
    pooled = LLaRAEncoder(model=str(tiny_backbone_dir), batch_size=8, devices=("cpu", "cpu"))
    try:
        np.testing.assert_allclose(
            pooled.encode_passages(adi_texts), single.encode_passages(adi_texts), atol=1e-6
        )
        assert pooled.fingerprint == single.fingerprint
        short = adi_texts[:3]  # shorter than a batch: encoded in this process
        np.testing.assert_allclose(pooled.encode_queries(short), single.encode_queries(short), atol=1e-6)
    finally:
        pooled.pool().close()


def test_a_killed_worker_fails_the_call_and_a_rerun_completes(
    tiny_backbone_dir: Path, adi_texts: list[str]
) -> None:
    encoder = LLaRAEncoder(model=str(tiny_backbone_dir), batch_size=8, devices=("cpu", "cpu"))
    pool = encoder.pool()
    os.kill(pool.workers[1].pid, signal.SIGKILL)
    with pytest.raises(
        EncoderWorkerError, match=r"worker on cpu stopped \(exit code -9\).*Run the same command"
    ):
        encoder.encode_passages(adi_texts)
    assert encoder.pool() is not pool  # a new pool
    try:
        expected = LLaRAEncoder(model=str(tiny_backbone_dir), batch_size=8).encode_passages(adi_texts)
        np.testing.assert_allclose(encoder.encode_passages(adi_texts), expected, atol=1e-6)
    finally:
        encoder.pool().close()


class ThreadCounter:
    """An encoder stand-in whose vectors are the number of CPU threads its worker runs with."""

    def encode(self, texts: list[str], side: str, show_progress: bool = False) -> np.ndarray:
        import torch

        return np.full((len(texts), 1), torch.get_num_threads(), dtype=np.float32)


def test_cpu_workers_share_the_cores_instead_of_each_taking_them_all() -> None:
    import torch

    from llara_rag.encoding.pool import EncoderPool

    pool = EncoderPool([ThreadCounter, ThreadCounter], ["cpu", "cpu"], batch_size=1)
    try:
        threads = pool.encode(["a text"] * 8, "passage")
    finally:
        pool.close()
    assert set(threads[:, 0]) == {max(1, torch.get_num_threads() // 2)}
