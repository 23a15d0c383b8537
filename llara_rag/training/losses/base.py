"""What a training loss is to the trainer: an object holding its settings, called on (model, batch).

As in sentence-transformers, each loss is a module of its own with its config (``objective.LLaRALoss``,
``info_nce.CachedInfoNCE``); the one trainer (:class:`~llara_rag.training.trainer.AdapterTrainer`)
calls whichever it is given and records its ``get_config_dict()`` with the adapter. This module stays
free of heavy imports, so a loss can import it without pulling in the Trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import torch


class LossOutput(NamedTuple):
    """One batch's loss, the metrics logged beside it and the in-batch passage embeddings (collapse guard)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    embeddings: torch.Tensor


class TrainingLoss(Protocol):
    collapse_advice: str
    """What to try when the embeddings collapse under this loss, said in the error that stops the run."""

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput: ...

    def get_config_dict(self) -> dict[str, Any]:
        """The loss's name and settings, as the adapter's record and model card state them."""
        ...
