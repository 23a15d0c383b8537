"""Corpus vectors on disk, keyed by what produced them, so re-evaluating with the same encoder is free.

Encoding a corpus takes tens of minutes on a CPU while scoring takes seconds. The key joins the
encoder's fingerprint, the settings that change its vectors and the digest of the document texts: an
adapter, prompt or corpus edit gives a new key, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from llara_rag.encoding.backbone import cache_dir
from llara_rag.encoding.precision import INT8_SCHEME

logger = logging.getLogger(__name__)


def default_vector_dir() -> Path:
    return cache_dir() / "vectors"


def dtype_setting(dtype: object, precision: str | None = None) -> dict[str, str]:
    """The cache-key entry for weights of ``dtype``: none for fp32, so every fp32 key made before stays
    valid; bf16 or fp16 vectors score differently in the third decimal and must never answer for fp32 ones
    (the fingerprint ignores dtype on purpose: a store takes vectors of either). int8 quantises fp32
    weights after loading, so it is named on its own, with its scheme."""
    if precision == "int8":
        return {"precision": INT8_SCHEME}
    name = str(dtype).removeprefix("torch.")
    return {} if name == "float32" else {"dtype": name}


class VectorCache:
    """One ``.npz`` file (document ids + float32 vectors) per collection and encoder."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_vector_dir()

    @staticmethod
    def key(fingerprint: str, settings: Mapping[str, object], corpus_digest: str) -> str:
        payload = {"encoder": fingerprint, "settings": dict(settings), "corpus": corpus_digest}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, collection: str, key: str) -> Path:
        return self.directory / f"{collection}-{key}.npz"

    def load(self, path: Path, doc_ids: tuple[str, ...]) -> np.ndarray | None:
        """The cached vectors, or None when absent or unreadable or made for other documents."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                ids, vectors = stored["ids"], stored["vectors"]
        except (OSError, ValueError, KeyError) as error:
            logger.warning("Ignoring unreadable cached vectors %s (%s); re-encoding", path, error)
            return None
        if tuple(ids.tolist()) != doc_ids or vectors.shape[0] != len(doc_ids):
            logger.warning("Cached vectors %s belong to other documents; re-encoding", path)
            return None
        logger.info("Loaded cached corpus vectors %s", path)
        return vectors

    def save(self, path: Path, doc_ids: tuple[str, ...], vectors: np.ndarray) -> None:
        """Writes through a temporary file, so an interrupted run never leaves a truncated cache entry."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".writing-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, ids=np.array(doc_ids, dtype=str), vectors=vectors.astype(np.float32))
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.remove(staging)
        logger.info("Cached corpus vectors in %s", path)
