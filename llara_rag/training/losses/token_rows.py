"""The trainable ``<s1>..<s16>`` rows applied without peft's whole-vocabulary copies.

peft's ``trainable_token_indices`` (:func:`~llara_rag.training.trainer.lora_model`) keeps the rows as one
small parameter, and the adapter stores just that. Its forward pass, though, builds the embedding matrix
(and the tied LM head's) as a copy of the whole vocabulary with the rows written in, and its backward pass
computes a vocabulary-sized gradient to update 16 rows. A training step here reads the same parameter and
computes the same values from the frozen matrix: a batch's embeddings with the special positions
overwritten, the frozen head's logits with the special columns overwritten. What is trained, saved, loaded
and merged is unchanged. Anything else keeps peft's path: a model wrapped other than by DDP (FSDP,
DeepSpeed), sharded weights, scaled embeddings (Gemma), merged or several active adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from peft.tuners.trainable_tokens import TrainableTokensLayer


@dataclass(frozen=True)
class TokenRows:
    """A peft model's trainable token rows, with the frozen embedding they overwrite."""

    embedding: torch.nn.Embedding
    rows: torch.nn.Parameter
    """(tokens, hidden): peft's trainable rows, in the order of ``token_ids``."""
    token_ids: torch.Tensor
    tied: bool
    """Whether the LM head reads the same rows (tied input and output embeddings)."""

    @classmethod
    def of(cls, model: torch.nn.Module) -> TokenRows | None:
        """The rows of a (possibly DDP-wrapped) peft model training them; None when peft's path must run."""
        import torch
        from peft import PeftModel

        inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        if not isinstance(inner, PeftModel):
            return None
        layer = _token_layer(inner.get_input_embeddings())
        if layer is None or layer.merged or layer.disable_adapters or len(layer.active_adapters) != 1:
            return None
        adapter = layer.active_adapters[0]
        rows = layer.trainable_tokens_delta[adapter]
        embedding = layer.get_base_layer()
        if (
            not rows.requires_grad  # nothing to train: peft's path keeps its input-gradient hooks
            or not isinstance(embedding, torch.nn.Embedding)
            or hasattr(embedding, "embed_scale")
            or _sharded(rows)
            or _sharded(embedding.weight)
        ):
            return None
        head = _token_layer(inner.get_output_embeddings())
        tied = head is not None and head.tied_adapter is layer
        token_ids = torch.tensor(layer.token_indices[adapter], device=rows.device)
        return cls(embedding, rows, token_ids, tied)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids``' embeddings, as peft's layer gives them: the frozen rows, the trained ones at their ids."""
        import torch

        embeddings = self.embedding(input_ids)
        slot = torch.full((self.embedding.num_embeddings,), -1, dtype=torch.long, device=input_ids.device)
        slot[self.token_ids] = torch.arange(len(self.token_ids), device=input_ids.device)
        positions = slot[input_ids]
        special = positions >= 0
        trained = self.rows.to(embeddings.dtype)[positions[special]]
        return embeddings.masked_scatter(special.unsqueeze(-1), trained)

    def logits(self, hidden: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
        """``head``'s logits for ``hidden``; a tied head's special columns come from the trained rows."""
        import torch.nn.functional as F

        if not self.tied:
            return head(hidden)
        logits = F.linear(
            hidden, self.embedding.weight
        )  # in place below: linear keeps no output for backward
        return logits.index_copy_(-1, self.token_ids, F.linear(hidden, self.rows.to(hidden.dtype)))


def model_inputs(rows: TokenRows | None, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The keyword arguments that feed ``input_ids`` to the model: embeddings where ``rows`` apply."""
    return {"input_ids": input_ids} if rows is None else {"inputs_embeds": rows.embed(input_ids)}


def lm_head(model: torch.nn.Module, rows: TokenRows | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The LM head of a (possibly wrapped) model as a function of the final hidden states."""
    from accelerate.utils import extract_model_from_parallel

    head = extract_model_from_parallel(model).get_output_embeddings()
    return head if rows is None else lambda hidden: rows.logits(hidden, head)


def _token_layer(module: torch.nn.Module | None) -> TrainableTokensLayer | None:
    from peft.tuners.trainable_tokens import TrainableTokensLayer

    if module is None:
        return None
    return next((m for m in module.modules() if isinstance(m, TrainableTokensLayer)), None)


def _sharded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a shard (FSDP2's DTensor), whose whole value exists only inside forward."""
    import torch

    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)
