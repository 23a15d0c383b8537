"""An adapter moved part of the way back to the one its training started from, in weight space (WiSE-FT,
Wortsman et al. 2022).

Adaptation trains on a collection's own text, which rewards what that text rewards and wears away what the
start adapter learnt from labelled pairs. Halfway between the two kept most of the adaptation's dense gain
without its loss in the hybrid, on Cranfield and CACM (docs/adapt.md). Both are LoRAs of one backbone, so the
interpolation is one LoRA too: ``W + (1 - s) * c_a * B_a A_a + s * c_b * B_b A_b`` is a LoRA of both ranks
concatenated, each ``B`` scaled by its share and its own LoRA scaling ``c`` (the new scaling is 1); the
trainable special-token rows are interpolated as they are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from llara_rag.encoding.adapter import PEFT_FILES
from llara_rag.errors import AdapterError

logger = logging.getLogger(__name__)

TOKEN_ROWS = "trainable_tokens_delta"
"""The suffix of the state-dict keys that hold the trained special-token rows (peft's trainable tokens)."""


def interpolate_adapter(directory: Path, start: Path, share: float) -> None:
    """Rewrites the LoRA adapter in ``directory`` in place as ``(1 - share)`` of itself and ``share`` of
    ``start``, the adapter its training continued.

    Refused when the two do not fit: other target modules, other special-token rows, or per-module ranks.
    """
    import torch
    from safetensors.torch import load_file, save_file

    config_file, weights_file = PEFT_FILES
    configs = [json.loads((path / config_file).read_text(encoding="utf-8")) for path in (directory, start)]
    weights = [load_file(path / weights_file) for path in (directory, start)]
    _check_fit(configs, weights, directory, start)
    shares = (1 - share, share)
    scalings = [
        config["lora_alpha"] / (config["r"] ** 0.5 if config.get("use_rslora") else config["r"])
        for config in configs
    ]
    merged: dict[str, torch.Tensor] = {}
    for key, tensor in weights[0].items():
        other = weights[1][key]
        if key.endswith(TOKEN_ROWS):
            merged[key] = shares[0] * tensor + shares[1] * other
        elif ".lora_A." in key:
            merged[key] = torch.cat([tensor, other], dim=0)
        elif ".lora_B." in key:
            parts = [s * c * b for s, c, b in zip(shares, scalings, (tensor, other), strict=True)]
            merged[key] = torch.cat(parts, dim=1)
        else:
            raise AdapterError(
                f"{directory}: {key} is neither LoRA nor special-token rows; cannot interpolate."
            )
    rank = sum(config["r"] for config in configs)
    config = {**configs[0], "r": rank, "lora_alpha": rank, "use_rslora": False}
    save_file({key: value.contiguous() for key, value in merged.items()}, directory / weights_file)
    (directory / config_file).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    logger.info("Adapter interpolated with %s: %.2f of it kept (LoRA rank %d)", start, share, rank)


def _check_fit(configs: list[dict], weights: list[dict], directory: Path, start: Path) -> None:
    for field in ("target_modules", "trainable_token_indices", "rank_pattern", "alpha_pattern"):
        values = [config.get(field) or None for config in configs]
        if field == "target_modules":
            values = [sorted(value) if isinstance(value, list) else value for value in values]
        if field.endswith("pattern") and any(values):
            raise AdapterError(f"{directory}: per-module ranks ({field}) cannot be interpolated.")
        if values[0] != values[1]:
            raise AdapterError(
                f"{directory} and {start} differ in {field}; only an adapter and the one its training "
                "continued can be interpolated (pass --start-share 0)."
            )
    if weights[0].keys() != weights[1].keys():
        raise AdapterError(f"{directory} and {start} hold other modules; cannot interpolate.")
