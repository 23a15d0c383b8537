"""The adapter directory: what the trainers write and the encoder loads.

An adapter directory holds a PEFT LoRA adapter (``adapter_model.safetensors``, ``adapter_config.json``),
the tokenizer, a model card (``README.md``), ``llara_config.json``, which records the backbone it was
trained on, so that loading it on another backbone is refused instead of silently producing noise, and
after the unsupervised stage the domain whitening (``whitening.safetensors``) its vectors go through.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from llara_rag.errors import AdapterError
from llara_rag.prompts import DEFAULT_PROMPTS, LLaRAPrompts

if TYPE_CHECKING:
    from llara_rag.backbone import Backbone

logger = logging.getLogger(__name__)

LLARA_CONFIG_FILE = "llara_config.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


class AdapterInfo(BaseModel):
    """The contents of ``llara_config.json``."""

    backbone: str = Field(description="The model name the adapter was trained on, as given to the trainer.")
    backbone_identity: str = Field(description="BackboneSource.identity of that model.")
    special_token_ids: list[int] = Field(description="Ids of <s1>..<s16> in the training tokenizer.")
    prompts: LLaRAPrompts = DEFAULT_PROMPTS
    pooling: str = "mean-special-8"
    stage: str = Field(default="adaptation", description="adaptation (EBAE+EBAR) or contrastive.")
    training: dict[str, Any] = Field(default_factory=dict, description="A summary of the run.")


def require_adapter_files(directory: str | Path) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise AdapterError(f"Adapter directory {path} does not exist.")
    missing = [name for name in PEFT_FILES if not (path / name).is_file()]
    if missing:
        raise AdapterError(
            f"{path} is not a complete adapter (missing {', '.join(missing)}); pass the directory "
            "that `llara-rag adapt` or `llara-rag finetune` wrote."
        )
    return path


def read_adapter_info(directory: str | Path) -> AdapterInfo | None:
    config = require_adapter_files(directory) / LLARA_CONFIG_FILE
    if not config.is_file():
        return None
    return AdapterInfo.model_validate_json(config.read_text(encoding="utf-8"))


def write_adapter_info(directory: str | Path, info: AdapterInfo) -> None:
    Path(directory, LLARA_CONFIG_FILE).write_text(info.model_dump_json(indent=2), encoding="utf-8")


def adapter_digest(directory: str | Path) -> str:
    """A hash of the adapter's weights, config and whitening: two adapters with equal digests embed alike."""
    from llara_rag.whitening import WHITENING_FILE

    path = require_adapter_files(directory)
    digest = hashlib.sha256()
    for name in PEFT_FILES:
        digest.update((path / name).read_bytes())
    if (path / WHITENING_FILE).is_file():
        digest.update((path / WHITENING_FILE).read_bytes())
    return digest.hexdigest()[:16]


def check_adapter(backbone: Backbone, directory: str | Path) -> AdapterInfo | None:
    """Reads the adapter's ``llara_config.json`` and refuses it when it was trained on another backbone."""
    info = read_adapter_info(directory)
    if info is None:
        logger.warning(
            "%s has no %s; assuming it matches %s", directory, LLARA_CONFIG_FILE, backbone.source.identity
        )
    else:
        if info.backbone_identity != backbone.source.identity:
            raise AdapterError(
                f"Adapter {directory} was trained on {info.backbone!r} ({info.backbone_identity}) but the "
                f"encoder loaded {backbone.source.identity}; pass model={info.backbone!r} with this adapter."
            )
        if list(backbone.special_ids.all) != info.special_token_ids:
            raise AdapterError(
                f"Adapter {directory} expects special-token ids {info.special_token_ids}, the loaded "
                f"tokenizer has {list(backbone.special_ids.all)}; the adapter and backbone do not match."
            )
    return info


def apply_adapter(backbone: Backbone, directory: str | Path) -> None:
    """Loads a LoRA adapter onto the backbone and merges it, so inference costs what the base costs.

    Both training stages write one LoRA relative to the base backbone (the contrastive stage keeps
    training the adaptation LoRA rather than stacking a second one), so one load serves either stage.
    """
    from peft import PeftModel

    check_adapter(backbone, directory)
    try:
        peft_model = PeftModel.from_pretrained(backbone.model, str(directory))
    except (RuntimeError, ValueError, KeyError) as error:
        raise AdapterError(
            f"Adapter {directory} does not fit backbone {backbone.source.identity}: {error}"
        ) from error
    backbone.model = peft_model.merge_and_unload()
    backbone.model.eval()
