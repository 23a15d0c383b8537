"""What one contrastive training row holds: a query, its positive, its K negatives, and where each came from.

Labelled groups (:mod:`llara_rag.training.data.pairs`) and label-free pairs
(:mod:`llara_rag.training.data.pseudo_pairs`) both become these rows, which the contrastive stage trains on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llara_rag.encoding.encoder import PromptInputs, collate
from llara_rag.errors import InvalidInputError
from llara_rag.training.data.corpus import document_key

if TYPE_CHECKING:
    import torch

    from llara_rag.training.data.pairs import TrainingGroup


@dataclass(frozen=True)
class GroupSample:
    """What one training row holds: a query, then its positive followed by its K negatives.

    ``keys`` name where each passage came from (a document, or a text's hash); the query shares its
    positive's key, and a passage with the query's key is never used as its negative. ``teacher``, when
    given, scores each negative for the query (the loss then follows it over them).
    """

    query: str
    passages: tuple[str, ...]
    keys: tuple[int, ...]
    teacher: tuple[float, ...] = ()


def text_key(text: str) -> int:
    """A 60-bit key equal for texts that differ only in case and whitespace."""
    return int(document_key(text)[:15], 16)


def draw_samples(groups: Sequence[TrainingGroup], negatives: int, seed: int) -> list[GroupSample]:
    """One sample per group: a random positive and K random negatives (repeated when fewer are known)."""
    samples = []
    for index, group in enumerate(groups):
        rng = random.Random(f"{seed}:{index}")
        positive = rng.choice(group.positives)
        if len(group.negatives) >= negatives:
            chosen = rng.sample(group.negatives, negatives)
        else:
            chosen = rng.choices(group.negatives, k=negatives)
        passages = (positive, *chosen)
        samples.append(GroupSample(group.query, passages, tuple(text_key(text) for text in passages)))
    return samples


class GroupCollator:
    """Samples -> queries and passages, each right-padded to its own longest row, with their keys (and
    ``teacher_scores`` when the samples carry them)."""

    def __init__(self, inputs: PromptInputs, query_max_length: int, passage_max_length: int) -> None:
        self.inputs = inputs
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length

    def __call__(self, samples: Sequence[GroupSample]) -> dict[str, torch.Tensor]:
        import torch

        queries = self.inputs([sample.query for sample in samples], "query", self.query_max_length)
        passages = self.inputs(
            [text for sample in samples for text in sample.passages], "passage", self.passage_max_length
        )
        batch = {f"query_{k}": v for k, v in collate(queries, self.inputs.pad_id).items()}
        batch |= {f"passage_{k}": v for k, v in collate(passages, self.inputs.pad_id).items()}
        batch["query_keys"] = torch.tensor([sample.keys[0] for sample in samples])
        batch["passage_keys"] = torch.tensor([key for sample in samples for key in sample.keys])
        if samples[0].teacher:
            batch["teacher_scores"] = torch.tensor([sample.teacher for sample in samples])
        return batch


def check_groups(samples: Sequence[GroupSample], world: int = 1) -> None:
    """In-batch negatives need at least two groups per device, from two different documents."""
    sources = len({sample.keys[0] for sample in samples})
    if len(samples) < 2 * world or sources < 2:
        raise InvalidInputError(
            f"{len(samples)} training groups from {sources} distinct document(s) are too few for in-batch "
            f"negatives; at least {2 * world} groups from 2 documents are needed."
        )
