"""Domain whitening: the linear map, fitted on a user's own documents, that LLaRA vectors go through last.

LLaRA embeddings of one domain share a dominant direction (the mean cosine between unrelated
passages is 0.9 and more): it adds a query-independent bias to every document's score and drowns
the directions that tell documents apart. Whitening (Su et al. 2021, "Whitening Sentence
Representations for Better Semantics and Faster Retrieval") removes it with no labels: subtract each
side's mean (queries and passages go through different prompts, so their means differ), rotate onto
the passages' principal directions, scale each to unit variance, and keep the leading ``k`` — the
trailing ones are estimation noise that whitening would amplify. The adaptation trainer fits one on a
sample of the training windows and stores it in the adapter directory; the encoder applies it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from llara_rag.errors import AdapterError

if TYPE_CHECKING:
    from llara_rag.encoding.prompts import Side

logger = logging.getLogger(__name__)

WHITENING_FILE = "whitening.safetensors"
"""The file in an adapter directory that holds its whitening, when it has one."""

QUERY_WORDS = 24
"""Pseudo-queries are the first words of sampled passages: short texts through the query prompt."""
MIN_SAMPLES_PER_DIMENSION = 2
"""A covariance needs clearly more samples than kept directions to estimate them."""


def default_dimensions(hidden_size: int) -> int:
    """A quarter of the hidden size: Su et al. keep a third to a quarter of BERT's 768."""
    return max(1, hidden_size // 4)


@dataclass(frozen=True)
class Whitening:
    passage_mean: np.ndarray
    query_mean: np.ndarray
    projection: np.ndarray
    """(hidden, k): principal directions of the passages, each divided by its standard deviation."""

    @property
    def dimension(self) -> int:
        return int(self.projection.shape[1])

    @classmethod
    def fit(cls, passages: np.ndarray, queries: np.ndarray, dimensions: int) -> Whitening:
        """Means of both sides and the top ``dimensions`` whitened directions of the passages."""
        if dimensions > passages.shape[1]:
            raise ValueError(f"Cannot keep {dimensions} of {passages.shape[1]} dimensions.")
        passage_mean = passages.mean(axis=0)
        centred = (passages - passage_mean).astype(np.float64)
        variances, directions = np.linalg.eigh(centred.T @ centred / max(1, len(passages) - 1))
        top = np.argsort(variances)[::-1][:dimensions]
        scale = np.sqrt(np.clip(variances[top], np.finfo(np.float64).tiny, None))
        return cls(
            passage_mean=passage_mean.astype(np.float32),
            query_mean=queries.mean(axis=0).astype(np.float32),
            projection=(directions[:, top] / scale).astype(np.float32),
        )

    def __call__(self, vectors: np.ndarray, side: Side) -> np.ndarray:
        mean = self.passage_mean if side == "passage" else self.query_mean
        whitened = (vectors - mean) @ self.projection
        norms = np.linalg.norm(whitened, axis=1, keepdims=True)
        return (whitened / np.clip(norms, 1e-12, None)).astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(directory) / WHITENING_FILE
        arrays = {
            "passage_mean": self.passage_mean,
            "query_mean": self.query_mean,
            "projection": self.projection,
        }
        # safetensors writes the raw buffer: a column-major array would come back transposed.
        save_file({name: np.ascontiguousarray(value) for name, value in arrays.items()}, str(path))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Whitening | None:
        """The adapter's whitening, or None when it has none (contrastive adapters, older adapters)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(directory) / WHITENING_FILE
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            whitening = cls(tensors["passage_mean"], tensors["query_mean"], tensors["projection"])
        except (OSError, ValueError, KeyError, SafetensorError) as error:
            raise AdapterError(
                f"{path} is unreadable ({error}); delete it to use the adapter without whitening, "
                "or re-run `llara-rag adapt`."
            ) from error
        hidden = whitening.projection.shape[0]
        if whitening.passage_mean.shape != (hidden,) or whitening.query_mean.shape != (hidden,):
            raise AdapterError(f"{path} holds inconsistent shapes; re-run `llara-rag adapt`.")
        return whitening


class Encodes(Protocol):
    """What fitting needs of an encoder: its width, and both sides' vectors (the encoder, or a trainer's)."""

    @property
    def dimension(self) -> int: ...

    def encode_passages(self, passages: Sequence[str], **kwargs: object) -> np.ndarray: ...

    def encode_queries(self, queries: Sequence[str], **kwargs: object) -> np.ndarray: ...


def fit_whitening(
    encoder: Encodes, texts: Sequence[str], dimensions: int, *, samples: int = 1024, seed: int = 0
) -> Whitening | None:
    """Fits on up to ``samples`` of ``texts`` as passages and their first words as queries.

    Returns None, with the reason logged, when there are too few texts to estimate ``dimensions``
    directions: an unwhitened adapter is better than one whitened on noise.
    """
    texts = [text for text in texts if text.strip()]
    needed = MIN_SAMPLES_PER_DIMENSION * dimensions
    if len(texts) < needed:
        logger.warning(
            "Not whitening: %d texts are too few for %d directions (need %d); pass fewer "
            "--whitening-dims or more documents.",
            len(texts),
            dimensions,
            needed,
        )
        return None
    sample = random.Random(seed).sample(texts, min(samples, len(texts)))
    logger.info(
        "Fitting domain whitening (%d of %d dimensions) on %d passages",
        dimensions,
        encoder.dimension,
        len(sample),
    )
    passages = encoder.encode_passages(sample, show_progress=True)
    pseudo_queries = [" ".join(text.split()[:QUERY_WORDS]) for text in sample]
    queries = encoder.encode_queries(pseudo_queries, show_progress=True)
    return Whitening.fit(passages, queries, dimensions)
