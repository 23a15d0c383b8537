"""InfoNCE over LLaRA embeddings, with a gradient cache that makes the batch size independent of memory.

In-batch negatives want large batches, and a 135M decoder holds ~2.5 MB of fp32 activations per token:
64 groups of a query and a 160-token passage would need ~30 GB. :class:`CachedInfoNCE` follows GradCache
(Gao et al. 2021) as sentence-transformers' ``CachedMultipleNegativesRankingLoss`` does: embed the batch in
chunks without a graph, take the loss and its gradient with respect to the embeddings, then (in the
backward pass) re-run each chunk with a graph and push that cached gradient through it. Peak memory is one
chunk's activations; the cost is one extra forward pass. Chunks hold a number of tokens, not of rows, and
rows are chunked by length, so short queries are never padded to the passages' length.

Every row carries a key (the document it came from, or a hash of its text): a passage that shares its
query's key without being its positive is masked out of that query's negatives, so duplicate documents
and several pairs of one document in a batch are never taught apart.

Rows may carry a teacher's scores of their hard negatives (label-free pairs whose negatives BM25, or BM25 +
the start encoder, ranked): then each query's scores over its own negatives also follow the teacher's softmax
over them (KL divergence, as sentence-transformers' ``DistillKLDivLoss``; GPL and RocketQAv2 distil a
stronger ranker so), which teaches how much less each is worth than the positive rather than only that it
is. The positive is left out of that softmax: the teacher ranks the whole window the query was cut
from, query included, far above anything else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.encoding.encoder import pool_special
from llara_rag.training.losses.base import LossOutput
from llara_rag.training.losses.token_rows import TokenRows, model_inputs

if TYPE_CHECKING:
    import torch


DEFAULT_CHUNK_TOKENS = 2048
"""About 5 GB of activations for SmolLM2 in fp32: a contrastive step of 64 pairs then peaks under 8 GB."""
CHUNK_OVERHEAD = 100
"""A chunk's fixed cost, in padded positions. Each pass over a chunk streams every weight once, which on a
CPU takes as long as about 100 positions' products (SmolLM2: a 16-token chunk 0.54 s for its three passes,
a position 5-6 ms), and both scale with the model's size. From 50 to 200 the plans cost within 1 %."""
ACCURACY_METRIC = "accuracy"
"""Logged share of queries whose positive scores highest among all the passages they are compared with."""


TEACHER_TEMPERATURE = 0.4
"""Puts the teacher's scores on about the student's scale. A student's logit is cos / τ, and the default's
cosines spread 0.10 (standard deviation) over a query's candidates (30 CACM sentences against 400 of its
documents), 2 logits at τ 0.05; the hybrid teacher's scores are means of two z-scores, spread from 0.7 to 1
as the two correlate: 2 / 0.8 = 1 / 0.4."""


class InfoNCEConfig(BaseModel):
    """The loss's settings, recorded with the adapter."""

    model_config = ConfigDict(frozen=True)

    temperature: float = Field(default=0.05, gt=0, description="τ in softmax(q·p / τ).")
    chunk_tokens: int = Field(
        default=DEFAULT_CHUNK_TOKENS,
        ge=0,
        description="Tokens (padding included) embedded with a graph at a time, the gradient cache's unit: "
        "about 2.4 MB of fp32 activations each for SmolLM2. 0 embeds the whole batch at once.",
    )
    cross_device: bool = Field(default=True, description="Score against the passages of every device.")
    teacher_temperature: float = Field(
        default=TEACHER_TEMPERATURE,
        gt=0,
        description="Groups with a teacher's scores: the teacher's softmax is taken over score / this.",
    )


def info_nce(
    queries: torch.Tensor,
    passages: torch.Tensor,
    group_size: int,
    temperature: float,
    *,
    query_keys: torch.Tensor | None = None,
    passage_keys: torch.Tensor | None = None,
    cross_device: bool = True,
    teacher_scores: torch.Tensor | None = None,
    teacher_temperature: float = TEACHER_TEMPERATURE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of ``queries`` (n, d) against ``passages`` (n * group_size, d), and the top-1 accuracy.

    Query i's positive is passage ``i * group_size``; the rest of its group and every other passage are
    its negatives, except passages whose key equals the query's (same document). With ``teacher_scores``
    (n, group_size - 1) of each query's own negatives, the KL divergence from the teacher's softmax over
    them (at ``teacher_temperature``) to the query's own (at ``temperature``) is added. With ``cross_device``
    under an initialised process group, passages (and keys) of all ranks are gathered with an
    autograd-aware all-gather, so gradients reach the rank that embedded them.
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    offset = 0
    if cross_device and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather

        offset = dist.get_rank() * passages.shape[0]
        passages = torch.cat(all_gather(passages))
        if passage_keys is not None:
            gathered = [torch.empty_like(passage_keys) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, passage_keys)
            passage_keys = torch.cat(gathered)
    scores = queries.float() @ passages.float().T / temperature
    targets = offset + torch.arange(queries.shape[0], device=queries.device) * group_size
    distillation = 0.0
    if teacher_scores is not None:
        negatives = targets[:, None] + torch.arange(1, group_size, device=queries.device)
        distillation = F.kl_div(
            F.log_softmax(scores.gather(1, negatives), dim=1),
            F.log_softmax(teacher_scores.float() / teacher_temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
    if query_keys is not None and passage_keys is not None:
        same = query_keys[:, None] == passage_keys[None, :]
        same[torch.arange(len(targets)), targets] = False
        scores = scores.masked_fill(same, torch.finfo(scores.dtype).min)
    loss = F.cross_entropy(scores, targets) + distillation
    accuracy = (scores.argmax(dim=1) == targets).float().mean()
    return loss, accuracy.detach()


def embed(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2-normalised mean of the final states at the 8 special positions: the encoder's vectors.

    The call goes through the (possibly DDP-wrapped) model itself so distributed gradients are reduced;
    ``logits_to_keep=1`` spares the vocabulary-sized logits nobody reads.
    """
    import torch.nn.functional as F

    outputs = model(
        **model_inputs(TokenRows.of(model), batch["input_ids"]),
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        output_hidden_states=True,
        use_cache=False,
        logits_to_keep=1,
    )
    return F.normalize(pool_special(outputs.hidden_states[-1], batch["attention_mask"]), dim=-1)


class _RandomState:
    """The RNG state before a chunk's first pass, restored for its second so dropout masks match."""

    def __init__(self) -> None:
        import torch

        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    @contextmanager
    def replay(self) -> Iterator[None]:
        import torch

        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def chunks(
    batch: dict[str, torch.Tensor], max_tokens: int
) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """(row indices, inputs cut to their longest row) per chunk of at most ``max_tokens`` padded tokens.

    Rows go longest first, so each chunk holds rows of similar length: short queries share a chunk of many
    rows, long passages one of few, and memory stays bounded whatever the lengths (one row at the least).
    """
    lengths = batch["attention_mask"].sum(dim=1)
    order = lengths.argsort(descending=True, stable=True)
    widths = lengths[order].tolist()
    result = []
    for start, end in _cuts(widths, max_tokens):
        rows = order[start:end]
        result.append((rows, {key: value[rows, : widths[start]] for key, value in batch.items()}))
    return result


def _cuts(widths: list[int], max_tokens: int) -> list[tuple[int, int]]:
    """The (start, end) chunks of ``widths`` (longest first) least costly in padded positions.

    Cutting only where a chunk is full pads a 160-token passage's chunk with 40-token ones (18 % of a
    contrastive step's positions were padding); each extra chunk costs ``CHUNK_OVERHEAD`` positions, so
    the cuts minimise padded positions plus that a chunk (dynamic programming over the cut points).
    """
    if not max_tokens:
        return [(0, len(widths))]
    cost = [0.0] + [math.inf] * len(widths)
    first = [0] * (len(widths) + 1)
    for end in range(1, len(widths) + 1):
        for start in range(end - 1, -1, -1):
            if start < end - 1 and (end - start) * widths[start] > max_tokens:
                break  # an earlier start has more rows and wider ones: it does not fit either
            total = cost[start] + (end - start) * widths[start] + CHUNK_OVERHEAD
            if total < cost[end]:
                cost[end], first[end] = total, start
    cuts = []
    end = len(widths)
    while end:
        cuts.append((first[end], end))
        end = first[end]
    return cuts[::-1]


class CachedInfoNCE:
    """InfoNCE of queries against groups of passages, embedded chunk by chunk through a gradient cache.

    ``batch`` holds ``query_*`` and ``passage_*`` inputs (each padded to its own length) and the rows'
    ``query_keys``/``passage_keys``. With gradients enabled, the returned loss carries a backward hook that
    re-embeds each chunk with a graph; under ``torch.no_grad`` (or ``chunk_tokens`` 0) it is a plain loss.
    The metrics hold the top-1 accuracy, the embeddings the detached passage vectors.
    """

    collapse_advice = "Try a lower --lr or a higher --temperature."

    def __init__(self, config: InfoNCEConfig, group_size: int) -> None:
        self.config = config
        self.group_size = group_size

    def get_config_dict(self) -> dict[str, Any]:
        return {"loss": "InfoNCE", "group_size": self.group_size, **self.config.model_dump()}

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        import torch

        sides = {side: _side(batch, side) for side in ("query", "passage")}
        if not self.config.chunk_tokens or not torch.is_grad_enabled():
            queries, passages = (embed(model, sides[side]) for side in ("query", "passage"))
            loss, accuracy = self._loss(queries, passages, batch)
            return LossOutput(loss, {ACCURACY_METRIC: accuracy}, passages.detach())
        plan = {side: chunks(inputs, self.config.chunk_tokens) for side, inputs in sides.items()}
        states: dict[str, list[_RandomState]] = {side: [] for side in plan}
        embeddings = {}
        for side, parts in plan.items():
            out = None
            for rows, inputs in parts:
                states[side].append(_RandomState())
                with torch.no_grad():
                    vectors = embed(model, inputs)
                if out is None:
                    out = vectors.new_empty(len(batch[f"{side}_keys"]), vectors.shape[1])
                out[rows] = vectors
            embeddings[side] = out.requires_grad_()  # type: ignore[union-attr]
        with torch.enable_grad():
            loss, accuracy = self._loss(embeddings["query"], embeddings["passage"], batch)
            loss.backward()
        cache = {side: vectors.grad for side, vectors in embeddings.items()}
        surrogate = loss.detach().requires_grad_()
        surrogate.register_hook(partial(self._backward, model, plan, states, cache))
        return LossOutput(surrogate, {ACCURACY_METRIC: accuracy}, embeddings["passage"].detach())

    def _loss(
        self, queries: torch.Tensor, passages: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return info_nce(
            queries,
            passages,
            self.group_size,
            self.config.temperature,
            query_keys=batch["query_keys"],
            passage_keys=batch["passage_keys"],
            cross_device=self.config.cross_device,
            teacher_scores=batch.get("teacher_scores"),
            teacher_temperature=self.config.teacher_temperature,
        )

    @staticmethod
    def _backward(
        model: torch.nn.Module,
        plan: dict[str, list[tuple[torch.Tensor, dict[str, torch.Tensor]]]],
        states: dict[str, list[_RandomState]],
        cache: dict[str, torch.Tensor],
        grad_output: torch.Tensor,
    ) -> None:
        """Re-embeds each chunk with a graph and back-propagates its cached gradient (scaled by the caller's)."""
        import torch

        work = [(side, part, state) for side in plan for part, state in zip(plan[side], states[side])]
        # Under DDP, gradients are reduced once, on the last backward of the step (other engines, such as
        # DeepSpeed, reduce as they go).
        ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        with torch.enable_grad():
            for index, (side, (rows, inputs), state) in enumerate(work):
                last = index == len(work) - 1
                with state.replay(), model.no_sync() if ddp and not last else nullcontext():
                    vectors = embed(model, inputs)
                    (vectors * cache[side][rows] * grad_output).sum().backward()


def _side(batch: dict[str, torch.Tensor], side: str) -> dict[str, torch.Tensor]:
    prefix = f"{side}_"
    return {
        key[len(prefix) :]: value
        for key, value in batch.items()
        if key.startswith(prefix) and key != f"{side}_keys"
    }
