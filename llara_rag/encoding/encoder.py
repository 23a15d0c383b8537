"""LLaRAEncoder: texts in, L2-normalised LLaRA embeddings out, with no framework around it.

texts -> prompt token ids (only the text is truncated) -> batches sorted by length -> base-model
forward -> mean of the final hidden states at the 8 special positions -> L2 norm -> the adapter's
domain whitening, when it has one -> float32 numpy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llara_rag.encoding.adapter import DEFAULT, PEFT_FILES, AdapterDirectory, adapter_name, resolve_adapter
from llara_rag.encoding.backbone import DEFAULT_MODEL, Backbone, Dtype, Quantization, load_backbone
from llara_rag.encoding.precision import (
    Precision,
    int8_network,
    precision_dtype,
    resolve_precision,
)
from llara_rag.encoding.prompts import DEFAULT_PROMPTS, N_POOLED, LLaRAPrompts, Side
from llara_rag.errors import InvalidInputError, UnsupportedPrecisionError
from llara_rag.settings import not_unicode

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from llara_rag.encoding.backbone import SpecialTokenIds
    from llara_rag.encoding.pool import EncoderPool

logger = logging.getLogger(__name__)

POOLING = "mean-special-8"
PROGRESS_THRESHOLD = 64


class EncoderFields(BaseModel):
    """The settings the encoder and its LlamaIndex and LangChain faces share, declared once here."""

    adapter: str | None = Field(
        default=DEFAULT,
        description="A LoRA adapter directory written by a trainer; 'default': the shipped adapter on the "
        "default backbone (none on other models); 'none' or None: the bare backbone.",
    )
    query_max_length: int = Field(
        default=128, gt=0, description="Query text tokens kept (prompt not counted)."
    )
    passage_max_length: int = Field(
        default=512, gt=0, description="Passage text tokens kept (prompt not counted)."
    )
    prompts: LLaRAPrompts = DEFAULT_PROMPTS
    lowercase: bool | None = Field(
        default=None,
        description="Lower-case every text before encoding, queries and passages alike, so that capitals "
        "typed or stored carry no weight; None: as the adapter was trained (its llara_config.json), else off.",
    )
    device: str | None = Field(default=None, description="cuda, cpu, ...; None picks CUDA when present.")
    dtype: Dtype | None = Field(
        default=None, description="float32, bfloat16 or float16; None: fp32 on CPU, bf16 on GPU."
    )
    quantization: Quantization | None = Field(
        default=None,
        description="8bit or 4bit (NF4) weights through bitsandbytes, on a CUDA GPU: a 7B checkpoint in "
        "about 8 or 5 GB instead of 14.",
    )
    device_map: str | None = Field(
        default=None, description="'auto' spreads a model too large for one GPU over all of them."
    )
    precision: Precision | None = Field(
        default=None,
        description="fp32 or bf16 weights, or int8 (CPU: quantised and compiled, for bulk encoding); 'auto': "
        "the fastest this CPU was measured to run without moving nDCG@10 (llara_rag.encoding.precision.AUTO); None: as dtype says. Resolved when the config is "
        "made, so it holds the precision that runs.",
    )
    devices: tuple[str, ...] | None = Field(
        default=None,
        description="Several devices (e.g. cuda:0, cuda:1): one worker process with its own model on each "
        "shares every encode call longer than a batch; the vectors are those of one device, in order.",
    )


MODEL_DESCRIPTION = "Embedded alias, .gguf file, local folder or Hub id."


class EncoderConfig(EncoderFields):
    """Everything that decides which model runs and which vectors come out."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(default=DEFAULT_MODEL, description=MODEL_DESCRIPTION)
    batch_size: int = Field(default=16, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _resolve_adapter(cls, values: Any) -> Any:
        """Names become directories here, and the text case the adapter was trained with its setting, so
        fingerprints and pins see the adapter and inputs actually used."""
        if isinstance(values, dict):
            model = values.get("model", DEFAULT_MODEL)
            adapter = resolve_adapter(values.get("adapter", DEFAULT), default_backbone=model == DEFAULT_MODEL)
            values = {**values, "adapter": adapter}
            if values.get("lowercase") is None:
                values["lowercase"] = trained_lowercase(adapter)
            values = _with_precision(values)
        return values


def _with_precision(values: dict[str, Any]) -> dict[str, Any]:
    """The precision resolved for this machine (and refused in one line if it cannot run, before any model
    loads), and the weights' dtype it implies."""
    precision = resolve_precision(values.get("precision"), values.get("device"), values.get("devices"))
    implied = precision_dtype(precision)
    dtype = values.get("dtype")
    if implied and dtype and dtype != implied:
        raise UnsupportedPrecisionError(
            f"precision {precision} loads {implied} weights but dtype {dtype} was asked for; "
            "pass one of the two."
        )
    return {**values, "precision": precision, "dtype": dtype or implied}


class EncoderSettings(EncoderFields):
    """The encoder settings as the LlamaIndex and LangChain embedding classes expose them.

    Shared so those classes validate alike and build the same ``EncoderConfig``; ``model_name`` is
    their hosts' word for ``model``, and each class keeps its own batch-size field, named as its host expects.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description=MODEL_DESCRIPTION)

    def to_encoder_config(self, batch_size: int) -> EncoderConfig:
        shared = {name: getattr(self, name) for name in EncoderFields.model_fields}
        return EncoderConfig(model=self.model_name, batch_size=batch_size, **shared)


def trained_lowercase(adapter: str | None) -> bool:
    """Whether ``adapter`` was trained on lower-cased text (its ``llara_config.json`` says), so is served so.

    A folder that is no readable adapter answers False: loading it fails later with the message that
    names the fix, where a settings object could only wrap it.
    """
    from llara_rag.encoding.adapter import read_adapter_info
    from llara_rag.errors import AdapterError

    try:
        info = read_adapter_info(adapter) if adapter else None
    except AdapterError:
        return False
    return info.lowercase if info else False


def pool_special(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the last ``N_POOLED`` real positions of each row, found from the mask.

    Every prompt ends with its eight special tokens, so they are the last eight attended positions
    whatever side the padding is on (reading ``[:, -8:]`` is only right for left padding).
    """
    import torch

    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask * positions).amax(dim=1)
    offsets = torch.arange(N_POOLED - 1, -1, -1, device=attention_mask.device)
    index = (last[:, None] - offsets[None, :]).clamp(min=0)
    gathered = hidden.gather(1, index[:, :, None].expand(-1, -1, hidden.shape[-1]))
    return gathered.float().mean(dim=1)


def collate(
    sequences: Sequence[Sequence[int]], pad_id: int, padding_side: Literal["left", "right"] = "right"
) -> dict[str, torch.Tensor]:
    """Pads token id lists into a batch, with position ids that ignore the padding on either side."""
    import torch

    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        span = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
        input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, span] = 1
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def encode_longest_first(
    inputs: Sequence[Sequence[int]],
    embed: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    *,
    dimension: int,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    description: str,
    show_progress: bool,
    padding_side: Literal["left", "right"] = "right",
) -> np.ndarray:
    """``embed``'s vectors of token id lists, in input order, computed longest first in fixed-size batches.

    Sorted by length, each batch pads little and memory peaks at once. The progress bar counts tokens:
    with the longest texts first, a count of texts would overstate the time left many times over.
    """
    import torch
    from tqdm.auto import tqdm

    output = np.empty((len(inputs), dimension), dtype=np.float32)
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]), reverse=True)
    with (
        torch.inference_mode(),
        tqdm(
            total=sum(map(len, inputs)),
            desc=description,
            unit="tok",
            unit_scale=True,
            disable=not show_progress,
        ) as bar,
    ):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            tensors = collate([inputs[i] for i in batch], pad_id, padding_side)
            vectors = embed({key: value.to(device) for key, value in tensors.items()})
            output[batch] = vectors.float().cpu().numpy()
            bar.update(sum(len(inputs[i]) for i in batch))
    return output


def validate_texts(texts: Sequence[str]) -> None:
    """Empty text has no meaning to embed; a vector for it would only pollute an index."""
    if isinstance(texts, str):
        raise InvalidInputError("Expected a list of texts, got a single string; wrap it in a list.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"Text {index} is a {type(text).__name__}, not a str.")
        if not text.strip():
            raise InvalidInputError(
                f"Text {index} is empty or whitespace only; drop it before embedding "
                "(llara-rag's ingestion skips such chunks)."
            )
        if problem := not_unicode(text):
            raise InvalidInputError(f"Text {index} {problem}; send it as UTF-8 text.")


class PromptInputs:
    """Token ids of the LLaRA prompts for one tokenizer: ``BOS + prefix + text + suffix + 8 special ids``.

    The encoder serves these ids and the contrastive trainer trains on them, so the two cannot drift apart.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        special_ids: SpecialTokenIds,
        prompts: LLaRAPrompts = DEFAULT_PROMPTS,
        *,
        lowercase: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.lowercase = lowercase
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.head: list[int] = bos + tokenizer(prompts.prefix, add_special_tokens=False)["input_ids"]
        self.tail: dict[Side, list[int]] = {
            "passage": tokenizer(prompts.passage_suffix, add_special_tokens=False)["input_ids"]
            + list(special_ids.summarize),
            "query": tokenizer(prompts.query_suffix, add_special_tokens=False)["input_ids"]
            + list(special_ids.predict),
        }

    def __call__(self, texts: Sequence[str], side: Side, max_length: int) -> list[list[int]]:
        """One id list per text; only the text is cut to ``max_length`` tokens."""
        validate_texts(texts)
        if not texts:
            return []
        encoded = self.tokenizer(
            [text.lower() for text in texts] if self.lowercase else list(texts),
            add_special_tokens=False,
            truncation=True,
            max_length=max_length,
        )
        return [self.head + ids + self.tail[side] for ids in encoded["input_ids"]]


class LLaRAEncoder:
    """The LLaRA embedder: passages through the EBAE prompt, queries through the EBAR prompt."""

    def __init__(
        self, config: EncoderConfig | None = None, *, backbone: Backbone | None = None, **fields: object
    ) -> None:
        """``backbone``: one already loaded with ``config``'s adapter applied, kept out of the process-wide
        sharing (the trainer encodes with an adapter still in its staging folder)."""
        base = config.model_dump() if config else {}
        self.config = EncoderConfig.model_validate({**base, **fields})
        self.padding_side: Literal["left", "right"] = "right"
        self.adapter = AdapterDirectory(self.config.adapter) if self.config.adapter else None
        self.backbone: Backbone = backbone or shared_backbone(self.config, self.adapter)
        self.whitening = self.adapter.whitening if self.adapter else None
        self.inputs = PromptInputs(
            self.backbone.tokenizer,
            self.backbone.special_ids,
            self.config.prompts,
            lowercase=bool(self.config.lowercase),
        )
        self._pad_id = self.inputs.pad_id
        self.fingerprint = self._fingerprint()
        self._pool: EncoderPool | None = None
        lengths = self._compare_with_training(self.adapter) if self.adapter else ""
        logger.info("Loaded LLaRA encoder %s%s", self.describe(), lengths)

    def _compare_with_training(self, adapter: AdapterDirectory) -> str:
        """Says where serving differs from what ``llara_config.json`` records of the adapter's training.

        Other prompts are a warning: the special tokens learnt to read what follows its own prompts.
        Other lengths are information, returned for the load message (not a line of their own on every
        command): chunks are commonly longer than training windows, and the benchmarks serve every
        adapter at the encoder's lengths.
        """
        from llara_rag.encoding.adapter import LLARA_CONFIG_FILE

        info = adapter.info
        if info is None:
            return ""
        if info.prompts != self.config.prompts:
            logger.warning(
                "Adapter %s was trained with the prompts %s but is served with %s; pass prompts as recorded "
                "in its %s unless the change is meant.",
                adapter,
                info.prompts.model_dump(),
                self.config.prompts.model_dump(),
                LLARA_CONFIG_FILE,
            )
        trained = info.trained_lengths
        served = (self.config.query_max_length, self.config.passage_max_length)
        if trained is None or (trained.query, trained.passage) == served:
            return ""
        return (
            f"; its adapter trained on queries of up to {trained.query} tokens and passages of up to "
            f"{trained.passage}, served with query_max_length={served[0]} and passage_max_length={served[1]}"
        )

    @property
    def device(self) -> torch.device:
        return self.backbone.network.device

    @property
    def precision(self) -> str:
        """The arithmetic the weights run in (fp32, bf16, fp16, int8), as ``--precision`` and reports name it."""
        if self.backbone.inference is not None:
            return "int8"
        name = str(self.backbone.network.dtype).removeprefix("torch.")
        return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name, name)

    @property
    def lowercase(self) -> bool:
        """Texts are lower-cased before encoding: those that differ in case alone get one vector."""
        return bool(self.config.lowercase)

    @property
    def dimension(self) -> int:
        return self.whitening.dimension if self.whitening else self.hidden_size

    @property
    def hidden_size(self) -> int:
        return self.backbone.hidden_size

    def special_ids(self, side: Side) -> tuple[int, ...]:
        ids = self.backbone.special_ids
        return ids.summarize if side == "passage" else ids.predict

    def max_length(self, side: Side) -> int:
        return self.config.passage_max_length if side == "passage" else self.config.query_max_length

    def build_inputs(self, texts: Sequence[str], side: Side) -> list[list[int]]:
        """``BOS + prefix + text[:max_length] + suffix + 8 special ids``; the suffix is never cut."""
        return self.inputs(texts, side, self.max_length(side))

    def encode(
        self,
        texts: Sequence[str],
        side: Side,
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        import torch

        if self.config.devices and len(texts) > (batch_size or self.config.batch_size):
            validate_texts(texts)
            return self.pool().encode(texts, side)
        inputs = self.build_inputs(texts, side)
        if not inputs:
            return np.empty((0, self.dimension), dtype=np.float32)
        encoder = self.backbone.base_model
        # A compiled module is not safe to call from two threads at once (serve's batcher and its chat).
        guard = _COMPILED_LOCK if self.backbone.inference is not None else nullcontext()

        def embed(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
            with guard:
                hidden = encoder(**tensors, use_cache=False).last_hidden_state
            return torch.nn.functional.normalize(pool_special(hidden, tensors["attention_mask"]), dim=-1)

        output = encode_longest_first(
            inputs,
            embed,
            dimension=self.hidden_size,
            batch_size=batch_size or self.config.batch_size,
            pad_id=self._pad_id,
            device=self.device,
            padding_side=self.padding_side,
            description=f"Encoding {len(inputs)} {'queries' if side == 'query' else 'passages'}",
            show_progress=show_progress if show_progress is not None else len(inputs) >= PROGRESS_THRESHOLD,
        )
        return self.whitening(output, side) if self.whitening else output

    def pool(self) -> EncoderPool:
        """The worker processes on ``config.devices``, started on first use; a pool a worker died in is
        replaced."""
        from functools import partial

        from llara_rag.encoding.pool import EncoderPool

        if self._pool is None or not self._pool.workers:
            devices = self.config.devices
            assert devices
            builds = [
                partial(LLaRAEncoder, self.config.model_copy(update={"device": device, "devices": None}))
                for device in devices
            ]
            self._pool = EncoderPool(builds, devices, self.config.batch_size)
        return self._pool

    def encode_queries(self, queries: Sequence[str], **kwargs: object) -> np.ndarray:
        return self.encode(queries, "query", **kwargs)  # type: ignore[arg-type]

    def encode_passages(self, passages: Sequence[str], **kwargs: object) -> np.ndarray:
        return self.encode(passages, "passage", **kwargs)  # type: ignore[arg-type]

    def _fingerprint(self) -> str:
        """Equal fingerprints mean interchangeable vectors: same backbone, adapter, prompts, pooling, size."""
        key = {
            "backbone": self.backbone.source.identity,
            "adapter": self.adapter.digest if self.adapter else None,
            "prompts": self.config.prompts.model_dump(),
            "pooling": POOLING,
            "dimension": self.dimension,
        }
        if self.config.quantization:  # quantised weights give other vectors; full ones keep their fingerprint
            key["quantization"] = self.config.quantization
        if self.config.lowercase:  # named only when on, so every fingerprint made before stays valid
            key["lowercase"] = True
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        """The model and adapter by name (the shipped adapter as 'default', not this machine's path)."""
        adapter = f" + adapter {adapter_name(self.config.adapter)}" if self.config.adapter else ""
        precision = " at int8" if self.config.precision == "int8" else ""
        return f"{self.config.model}{adapter}{precision} ({self.dimension}-d, fingerprint {self.fingerprint})"


_BACKBONES: dict[tuple[str | None, ...], Backbone] = {}
_SHARED: dict[tuple[EncoderConfig, tuple[int, int] | None], LLaRAEncoder] = {}
_SHARED_LOCK = threading.RLock()
_COMPILED_LOCK = threading.Lock()


def shared_backbone(config: EncoderConfig, adapter: AdapterDirectory | None) -> Backbone:
    """The weights depend on model, adapter (path and content), device and dtype only: encoders that
    differ in lengths or batch size, or come from different integrations, share one loaded copy.

    ``adapter``: ``config.adapter``'s folder, read by the encoder that asks.
    """
    from llara_rag.encoding.adapter import apply_adapter

    digest = adapter.digest if adapter else None
    key = (
        config.model,
        config.adapter,
        digest,
        config.device,
        config.dtype,
        config.precision == "int8",
        config.quantization,
        config.device_map,
    )
    with _SHARED_LOCK:
        if key not in _BACKBONES:
            backbone = load_backbone(
                config.model,
                device=config.device,
                dtype=config.dtype,
                quantization=config.quantization,
                device_map=config.device_map,
            )
            if adapter:
                apply_adapter(backbone, adapter)
            if config.precision == "int8":
                backbone.inference = int8_network(backbone.network.base_model, calibration_batches(backbone))
            _BACKBONES[key] = backbone
        return _BACKBONES[key]


def calibration_batches(backbone: Backbone) -> Iterator[dict[str, torch.Tensor]]:
    """int8's calibration text through the default prompts, a text a batch so that no padding is observed.

    It depends on the backbone alone, so every int8 encoder of one model and adapter has the same scales.
    """
    from llara_rag.encoding.calibration import PASSAGES, QUERIES

    inputs = PromptInputs(backbone.tokenizer, backbone.special_ids)
    sides: tuple[tuple[Side, tuple[str, ...]], ...] = (("passage", PASSAGES), ("query", QUERIES))
    for side, texts in sides:
        for ids in inputs(texts, side, max_length=512):
            yield {
                key: value.to(backbone.network.device) for key, value in collate([ids], inputs.pad_id).items()
            }


def get_encoder(config: EncoderConfig | None = None) -> LLaRAEncoder:
    """One encoder per configuration per process, so every integration shares the loaded weights."""
    config = config or EncoderConfig()
    key = (config, _weights_stamp(config.adapter))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = LLaRAEncoder(config)
        return _SHARED[key]


def _weights_stamp(adapter: str | None) -> tuple[int, int] | None:
    """Changes when an adapter is written again into the same folder (trainers replace it whole), at the
    cost of a stat rather than the digest's read of every byte."""
    weights = Path(adapter, PEFT_FILES[1]) if adapter else None
    if weights is None or not weights.is_file():
        return None
    stat = weights.stat()
    return stat.st_mtime_ns, stat.st_size
