"""The LLaRA adaptation objective: one forward pass per record, EBAE + EBAR bag-of-words losses.

A record's sequence is ``[BOS] prefix TEXT | passage-suffix <s1..s8> | query-suffix <s9..s16>``. The
two suffix blocks are parallel continuations of the text: a 4-D attention mask keeps the query block
from seeing the passage block and its position ids restart right after the text, so one pass gives
the states two separate passes (the encoder's passage and query inputs) would give, at about half
the cost. The mask is passed as an additive float tensor (0 = attend, dtype minimum = blocked)
through the model's public forward; boolean 4-D masks are interpreted differently by transformers.

Losses (Llama2Vec, with the guards FlagEmbedding users needed against embedding collapse):
- EBAE: the passage block's LM-head logits at ``<s1..s8>``, max over the 8 positions, log-softmax
  over the vocabulary, must cover the unique token ids of the text itself;
- EBAR: the same at ``<s9..s16>`` against the unique token ids of the next window;
  with ``target_weighting="idf"`` each target counts by its inverse document frequency over the
  training windows (BM25's), so words every window shares teach the embedding less than rare ones;
- LM: next-token prediction over the text, which keeps the backbone a language model.
``loss = lm_weight * LM + bow_weight * (EBAE + EBAR) / 2`` (EBAE alone when no record of the batch has a next window).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.encoding.encoder import PromptInputs
from llara_rag.encoding.prompts import DEFAULT_PROMPTS, N_POOLED, LLaRAPrompts
from llara_rag.training.data.corpus import Record
from llara_rag.training.losses.base import LossOutput
from llara_rag.training.losses.token_rows import TokenRows, lm_head, model_inputs

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from llara_rag.encoding.backbone import SpecialTokenIds

IGNORE = -100


class ObjectiveConfig(BaseModel):
    """The weights and target filtering of the objective."""

    model_config = ConfigDict(frozen=True)

    lm_weight: float = Field(default=1.0, ge=0, description="Weight of the next-token LM loss on the text.")
    bow_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight of (EBAE + EBAR) / 2; the reference divides the bag-of-words losses by 10.",
    )
    remove_stopwords: bool = Field(
        default=True, description="Drop stop words and punctuation from the bag-of-words targets."
    )
    target_weighting: Literal["uniform", "idf"] = Field(
        default="uniform",
        description="How bag-of-words targets count: equally, or by their IDF over the training windows.",
    )


@dataclass(frozen=True)
class Example:
    """One record laid out as a single sequence, with the indices the losses read."""

    input_ids: list[int]
    position_ids: list[int]
    text_end: int
    """Sequence index one past the last text token; the passage block starts here."""
    predict_start: int
    """Sequence index of the first query-block token."""
    lm_labels: list[int]
    summarize_index: list[int]
    predict_index: list[int]
    ebae_targets: list[int]
    ebar_targets: list[int]
    ebae_weights: list[float]
    ebar_weights: list[float]


def _stopword_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that decode to an English stop word (NLTK's list, shipped with LlamaIndex) or to no letter/digit."""
    from llama_index.core.utils import globals_helper

    stopwords = set(globals_helper.stopwords)
    found = set()
    for token_id in range(len(tokenizer)):
        piece = tokenizer.decode([token_id]).strip().lower()
        if piece in stopwords or not any(character.isalnum() for character in piece):
            found.add(token_id)
    return found


class ExampleBuilder:
    """Turns records into :class:`Example` s for one tokenizer, prompt set and window length."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        special_ids: SpecialTokenIds,
        *,
        max_text_tokens: int,
        remove_stopwords: bool = True,
        prompts: LLaRAPrompts = DEFAULT_PROMPTS,
        lowercase: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_text_tokens = max_text_tokens
        self.lowercase = lowercase
        inputs = PromptInputs(
            tokenizer, special_ids, prompts, lowercase=lowercase
        )  # the ids the encoder serves
        self.head = inputs.head
        self.passage_block = inputs.tail["passage"]
        self.query_block = inputs.tail["query"]
        self.excluded = set(tokenizer.all_special_ids) | set(special_ids.all)
        if remove_stopwords:
            self.excluded |= _stopword_ids(tokenizer)
        self.idf: dict[int, float] | None = None
        self.rarest = 1.0

    def _ids(self, text: str) -> list[int]:
        """Text and targets alike: a lower-cased adapter learns to predict the lower-cased words it reads."""
        return list(
            self.tokenizer(text.lower() if self.lowercase else text, add_special_tokens=False)["input_ids"]
        )

    def text_ids(self, text: str) -> list[int]:
        return self._ids(text)[: self.max_text_tokens]

    def targets(self, ids: Iterable[int]) -> list[int]:
        """The bag of words: unique ids, special and (optionally) stop-word ids removed, in a stable order."""
        return sorted(set(ids) - self.excluded)

    def weights(self, targets: list[int]) -> list[float]:
        """Each target's weight: 1, or after :meth:`fit_idf` its IDF (unseen tokens get the rarest one's)."""
        if self.idf is None:
            return [1.0] * len(targets)
        return [self.idf.get(token, self.rarest) for token in targets]

    def fit_idf(self, texts: Iterable[str]) -> None:
        """Weighs targets from now on by BM25's inverse document frequency over ``texts`` (the windows)."""
        frequencies: Counter[int] = Counter()
        count = 0
        for text in texts:
            frequencies.update(set(self.text_ids(text)))
            count += 1
        self.idf = {token: math.log(1 + (count - df + 0.5) / (df + 0.5)) for token, df in frequencies.items()}
        self.rarest = max(self.idf.values(), default=1.0)

    def __call__(self, record: Record) -> Example:
        text = self.text_ids(record.text)
        context = self.head + text
        text_end = len(context)
        predict_start = text_end + len(self.passage_block)
        input_ids = context + self.passage_block + self.query_block
        position_ids = list(range(predict_start)) + list(range(text_end, text_end + len(self.query_block)))
        lm_labels = [IGNORE] * len(input_ids)
        for index in range(len(self.head), text_end):
            lm_labels[index - 1] = input_ids[index]
        ebae_targets = self.targets(text)
        ebar_targets = self.targets(self.text_ids(record.next_text)) if record.next_text else []
        return Example(
            input_ids=input_ids,
            position_ids=position_ids,
            text_end=text_end,
            predict_start=predict_start,
            lm_labels=lm_labels,
            summarize_index=list(range(predict_start - N_POOLED, predict_start)),
            predict_index=list(range(len(input_ids) - N_POOLED, len(input_ids))),
            ebae_targets=ebae_targets,
            ebar_targets=ebar_targets,
            ebae_weights=self.weights(ebae_targets),
            ebar_weights=self.weights(ebar_targets),
        )


def _pad(rows: Sequence[Sequence[float]], value: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    import torch

    dtype = dtype or torch.long
    width = max(1, max(len(row) for row in rows))
    out = torch.full((len(rows), width), value, dtype=dtype)
    for index, row in enumerate(rows):
        out[index, : len(row)] = torch.tensor(row, dtype=dtype)
    return out


def parallel_block_mask(example: Example, width: int) -> torch.Tensor:
    """Which key each query position may attend to (True = allowed) for one right-padded row.

    Causal over ``context + passage block``; the query block sees the context and itself (causally)
    but not the passage block. Padding rows attend only to themselves, so no softmax row is empty.
    """
    import torch

    length = len(example.input_ids)
    allowed = torch.ones(width, width, dtype=torch.bool).tril()
    allowed[example.predict_start : length, example.text_end : example.predict_start] = False
    allowed[:, length:] = False
    allowed[length:, :] = False
    padding = torch.arange(length, width)
    allowed[padding, padding] = True
    return allowed


def collate_examples(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pads a batch; the attention mask is (batch, query, key) booleans, one design per row."""
    import torch

    input_ids = _pad([e.input_ids for e in examples], pad_id)
    width = input_ids.shape[1]
    return {
        "input_ids": input_ids,
        "position_ids": _pad([e.position_ids for e in examples], 0),
        "allowed": torch.stack([parallel_block_mask(e, width) for e in examples]),
        "lm_labels": _pad([e.lm_labels for e in examples], IGNORE),
        "summarize_index": _pad([e.summarize_index for e in examples], 0),
        "predict_index": _pad([e.predict_index for e in examples], 0),
        "ebae_targets": _pad([e.ebae_targets for e in examples], IGNORE),
        "ebar_targets": _pad([e.ebar_targets for e in examples], IGNORE),
        "ebae_weights": _pad([e.ebae_weights for e in examples], 0.0, torch.float32),
        "ebar_weights": _pad([e.ebar_weights for e in examples], 0.0, torch.float32),
    }


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, q, k) booleans -> (batch, 1, q, k) floats: 0 where allowed, the dtype's minimum elsewhere."""
    import torch

    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def bag_of_words_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """−(weighted) mean log-prob of the target ids under log-softmax(max over the block's positions).

    ``logits`` is (batch, 8, vocab); ``targets`` is (batch, T) padded with ``IGNORE``; ``weights``
    (batch, T) defaults to 1 per target. Rows without targets (no next window, or only stop words)
    do not count.
    """

    log_probs = logits.float().amax(dim=1).log_softmax(dim=-1)
    valid = targets != IGNORE
    weights = valid.float() if weights is None else weights * valid
    picked = log_probs.gather(1, targets.clamp(min=0)) * weights
    rows = weights.sum(dim=1) > 0
    if not rows.any():
        return log_probs.sum() * 0.0
    per_row = -picked.sum(dim=1) / weights.sum(dim=1).clamp(min=1e-12)
    return per_row[rows].mean()


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (batch, seq, d), index (batch, k) -> (batch, k, d)."""
    return values.gather(1, index[:, :, None].expand(-1, -1, values.shape[-1]))


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    lm: torch.Tensor
    ebae: torch.Tensor
    ebar: torch.Tensor
    passage_embeddings: torch.Tensor
    """(batch, hidden) L2-normalised mean of the final states at <s1..s8>, detached: what the encoder serves."""
    query_embeddings: torch.Tensor


def compute_objective(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], config: ObjectiveConfig
) -> ObjectiveOutput:
    """One forward pass over a collated batch and the weighted LM + EBAE + EBAR loss.

    The LM head runs only where a loss reads it (the text's next tokens and the 16 special positions),
    not over prompts and padding: about half the vocabulary-sized logits of a batch, and their backward,
    are never computed. ``logits_to_keep=1`` keeps the model from computing them all itself. The special-token
    rows go through :mod:`~llara_rag.training.losses.token_rows`, not peft's whole-vocabulary copies.
    """
    import torch
    import torch.nn.functional as F

    device = batch["input_ids"].device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    else:
        dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    rows = TokenRows.of(model)
    outputs = model(
        **model_inputs(rows, batch["input_ids"]),
        attention_mask=additive_mask(batch["allowed"], dtype),
        position_ids=batch["position_ids"],
        output_hidden_states=True,
        use_cache=False,
        logits_to_keep=1,
    )
    hidden = outputs.hidden_states[-1]  # the final norm's output: what the LM head reads
    head = lm_head(model, rows)
    labels = batch["lm_labels"]
    text = labels != IGNORE
    if text.any():
        lm = F.cross_entropy(head(hidden[text]).float(), labels[text])
    else:
        lm = hidden.sum() * 0.0
    ebae = bag_of_words_loss(
        head(_gather(hidden, batch["summarize_index"])), batch["ebae_targets"], batch["ebae_weights"]
    )
    ebar = bag_of_words_loss(
        head(_gather(hidden, batch["predict_index"])), batch["ebar_targets"], batch["ebar_weights"]
    )
    # A batch without any next window has no EBAR term: average the terms present, as the reference does.
    present = [
        term for term, key in ((ebae, "ebae_targets"), (ebar, "ebar_targets")) if (batch[key] != IGNORE).any()
    ]
    bow = sum(present) / len(present) if present else ebae
    loss = config.lm_weight * lm + config.bow_weight * bow
    hidden = hidden.detach()
    with torch.no_grad():
        passages = F.normalize(_gather(hidden, batch["summarize_index"]).float().mean(dim=1), dim=-1)
        queries = F.normalize(_gather(hidden, batch["predict_index"]).float().mean(dim=1), dim=-1)
    return ObjectiveOutput(loss, lm.detach(), ebae.detach(), ebar.detach(), passages, queries)


class LLaRALoss:
    """The objective as a training loss: LM + EBAE + EBAR on collated :class:`Example` s."""

    collapse_advice = "Try a lower --lr, a higher --lm-weight or a lower --bow-weight."

    def __init__(self, config: ObjectiveConfig) -> None:
        self.config = config

    def __call__(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> LossOutput:
        output = compute_objective(model, batch, self.config)
        metrics = {"lm": output.lm, "ebae": output.ebae, "ebar": output.ebar}
        return LossOutput(output.loss, metrics, output.passage_embeddings)

    def get_config_dict(self) -> dict[str, object]:
        return {"loss": "LLaRA (LM + EBAE + EBAR)", **self.config.model_dump()}


def mean_offdiagonal_cosine(embeddings: torch.Tensor) -> float:
    """Average cosine between distinct rows of L2-normalised embeddings: near 1 means collapse."""
    count = embeddings.shape[0]
    if count < 2:
        return float("nan")
    similarity = embeddings @ embeddings.T
    return float((similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1)))
