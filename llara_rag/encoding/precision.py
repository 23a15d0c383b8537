"""The arithmetic an encoder runs in: fp32, bf16 or int8, and what ``auto`` picks on this machine.

fp32 already runs near a CPU's fp32 matmul rate, so lower precision is the lever left for indexing.
``auto`` reads the CPU's feature flags and looks them up in :data:`AUTO`, a table of what
``benchmarks/encode_speed.py`` and ``benchmarks/precision_quality.py`` measured: a precision enters the
table for a CPU only when it ran faster there and moved nDCG@10 on the four collections measured by no more
than one query's swapped top documents does on the smallest (docs/encoder.md has the figures). A CPU the
table does not name keeps fp32, so no precision changes quality unmeasured.

bf16 and int8 vectors were measured close enough to fp32 ones to be interchangeable (a collection indexed at
one and searched at the other, both ways, moved nDCG@10 by at most 0.0113, on adi's 35 and CACM's 52 queries,
where one query's swap is 0.006; by at most 0.0056 on Cranfield and SciFact: benchmarks/results/
precision_quality.md and precision_quality_avx2.md), so every precision
keeps the fp32 fingerprint: a collection indexed on one machine is searched at whatever precision
another picks (the commands' ``auto`` runs fp32 on a collection indexed at fp32: int8 queries on fp32
vectors moved nDCG@10 most). The vector cache keys them apart all the same.

int8 is torchao's dynamic quantisation of the linear layers, but the top decoder layer's (weights per output channel, activations per
token, int8 matmuls) of the adapter-merged fp32 model after SmoothQuant (Xiao et al. 2023) has moved the
large-activation input channels' range into the weights, calibrated on the fixed text of
:mod:`llara_rag.encoding.calibration`; its transformer layers run through ``torch.compile``: eager, torchao's
int8 ran at half fp32's speed; compiled, the matmuls run on the CPU's int8 instructions. The first batch of a
process waits for the compiler (seconds once its kernels are cached on disk).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llara_rag.errors import UnsupportedPrecisionError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

for _name in ("torchao", "torch.utils._pytree"):
    # torchao, once installed, is imported by peft and transformers too: its import warns of GPU kernels it
    # could not load (CUDA, Triton) and of enums it registers with torch, on every command. Nothing a CPU
    # runs depends on them; errors still show.
    logging.getLogger(_name).setLevel(logging.ERROR)

Precision = Literal["auto", "fp32", "bf16", "int8"]
"""``auto``: per CPU, from :data:`AUTO`; the others as named."""

NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags under which bf16 matmuls run in hardware; elsewhere bf16 is emulated and slower than fp32."""
NATIVE_INT8 = frozenset({"avx512_vnni", "amx_int8"})
"""int8 dot-product instructions of the CPUs int8 is offered on (VNNI measured fast); on an AVX2 host without
any, int8 ran at a twentieth of fp32's speed. AVX-VNNI CPUs are unmeasured, so warned about as well."""


@dataclass(frozen=True)
class Measured:
    """What ``auto`` picks on CPUs with every flag of ``flags``, and where the measurement behind it is."""

    flags: frozenset[str]
    precision: Precision
    evidence: str


AUTO: tuple[Measured, ...] = (
    Measured(
        frozenset({"avx512f", "avx512_vnni"}),
        "int8",
        "benchmarks/results/encode_speed.md, benchmarks/results/precision_quality.md",
    ),
)
"""First match this install can run wins (int8 needs torchao and a C++ compiler); CPUs matching none keep
fp32. bf16 is in no row: slower than int8, it moved adi as much. AVX2 CPUs are in none: on an AVX2 host (no
VNNI) the compiled int8 layers ran at a fraction of fp32's speed (benchmarks/results/encode_speed_avx2.md),
which an AVX512 CPU held to AVX2 had not shown."""


@cache
def cpu_info() -> dict[str, str]:
    """The first processor's fields as Linux reports them (``flags``, ``model name``, ...); empty where
    ``/proc/cpuinfo`` is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():  # the end of the first processor's block
            break
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags; empty where Linux does not report them."""
    return frozenset(cpu_info().get("flags", "").split())


def instruction_set(flags: frozenset[str] | None = None) -> str:
    """A short name for the CPU's vector instructions, printed beside every speed figure."""
    flags = cpu_flags() if flags is None else flags
    if "avx512f" in flags:
        extras = [name.upper() for name in ("avx512_vnni", "avx512_bf16", "amx_bf16") if name in flags]
        return "+".join(["AVX512", *extras])
    return "AVX2" if "avx2" in flags else "pre-AVX2" if flags else "unknown"


def auto_precision(flags: frozenset[str] | None = None) -> Precision:
    """The recorded pick for a CPU with ``flags`` (this one by default) that this install can run: int8 is
    passed over without its extra or a compiler (said once, with the fix)."""
    flags = cpu_flags() if flags is None else flags
    for row in AUTO:
        if not row.flags <= flags:
            continue
        if row.precision == "int8" and (missing := int8_missing()):
            _skip_int8(missing)
            continue
        return row.precision
    return "fp32"


def resolve_precision(
    precision: Precision | None, device: str | None, devices: tuple[str, ...] | None = None
) -> Precision | None:
    """``precision`` as it will run, refused in one line before any model loads if it cannot; None and
    ``auto`` on a GPU keep the dtype rule (bf16 where the GPU has it). ``devices``: the workers' devices,
    where encoding is spread over several."""
    if precision is None:
        return None
    on_gpu = _on_gpu(device) or any(not name.startswith("cpu") for name in devices or ())
    if precision == "auto":
        if on_gpu:
            return None
        precision = auto_precision()
        _announce(precision)
    elif precision == "int8":
        _require_int8(on_gpu)
        if not cpu_flags() & NATIVE_INT8:
            logger.warning(
                "--precision int8 on a CPU without int8 dot-product instructions (%s: no avx512_vnni or "
                "amx_int8) ran slower than fp32 where measured; pass --precision fp32 or auto.",
                instruction_set(),
            )
    elif precision == "bf16" and on_gpu:
        _require_gpu_bf16()
    elif precision == "bf16":
        warn_if_emulated_bf16("--precision bf16", "pass --precision fp32 or auto")
    return precision


def warn_if_emulated_bf16(option: str, advice: str = "leave it out") -> None:
    """bf16 on a CPU without native bf16 runs, emulated, slower than fp32: said, with the way out."""
    if not cpu_flags() & NATIVE_BF16:
        logger.warning(
            "%s on a CPU without native bf16 (%s: no avx512_bf16 or amx_bf16) is emulated and slower than "
            "fp32; %s.",
            option,
            instruction_set(),
            advice,
        )


@cache
def _skip_int8(missing: str) -> None:
    logger.info("--precision auto would pick int8 on this %s CPU, but %s.", instruction_set(), missing)


@cache
def _announce(precision: Precision) -> None:
    """Once a process: every config made from the same settings resolves ``auto`` alike."""
    logger.info("--precision auto: %s on this %s CPU", precision, instruction_set())


def _on_gpu(device: str | None) -> bool:
    if device is not None:
        return not device.startswith("cpu")
    import torch

    return torch.cuda.is_available()


def _require_gpu_bf16() -> None:
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise UnsupportedPrecisionError(
            "--precision bf16: this GPU has no bf16; leave --precision out (fp16 there) or pass fp32."
        )


def _require_int8(on_gpu: bool) -> None:
    if on_gpu:
        raise UnsupportedPrecisionError(
            "--precision int8 runs on CPUs; on a GPU leave --precision out (bf16 there) or pass "
            "--quantization 8bit for bitsandbytes weights."
        )
    if missing := int8_missing():
        raise UnsupportedPrecisionError(f"--precision int8: {missing}; or pass --precision bf16 or fp32.")


def int8_missing() -> str | None:
    """What this install lacks to run int8 on a CPU, with the fix; None where nothing: torchao (the ``int8``
    extra) and a C++ compiler for ``torch.compile``'s kernels."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (`pip install 'llara-rag[int8]'` adds it)"
    compiler = os.environ.get("CXX", "g++")  # the one torch.compile's CPU backend calls
    if not shutil.which(compiler):
        return (
            f"its kernels are compiled with a C++ compiler and {compiler} was not found (install one, e.g. "
            "build-essential, or set CXX)"
        )
    return None


def precision_dtype(precision: Precision | None) -> Literal["float32", "bfloat16"] | None:
    """The weights' dtype a resolved precision loads (int8 quantises fp32 weights after loading)."""
    return {"fp32": "float32", "bf16": "bfloat16", "int8": "float32"}.get(precision or "")  # type: ignore[return-value]


SMOOTHQUANT_ALPHA = 0.5
"""The share of an input channel's activation range moved into the weights (SmoothQuant's alpha): of 0.3, 0.4,
0.5, 0.65 and 0.8, 0.5 kept int8 vectors closest to fp32's (docs/encoder.md)."""

FP32_TOP_LAYERS = 1
"""Decoder layers at the top of the stack left in fp32: int8 error there reaches the pooled special-token states
unaveraged by later layers; keeping the last one of SmolLM2's 30 brought CACM's int8 nDCG@10 from 0.0064 to
0.0032 below fp32's (docs/encoder.md)."""

INT8_SCHEME = f"int8-smoothquant{SMOOTHQUANT_ALPHA:g}" + (
    f"-fp32top{FP32_TOP_LAYERS}" if FP32_TOP_LAYERS else ""
)
"""How int8 vectors are made, named in the evaluation's vector cache key: another scheme's vectors (plain
int8's, another alpha's) are other vectors there. A collection's fingerprint leaves it out: int8 and fp32
vectors were measured interchangeable, so either encoder searches a collection the other indexed."""


def int8_network(
    network: torch.nn.Module, calibration: Iterable[Mapping[str, torch.Tensor]]
) -> torch.nn.Module:
    """``network`` smoothed and quantised to int8 in place (:func:`smoothquant_int8`), then compiled: each of
    its repeated layers (seconds: one graph for the int8 layers, one for the fp32 top), or the whole of it where it has none (minutes)."""
    from llara_rag.encoding.compilation import compile_repeated_layers

    network = smoothquant_int8(network, calibration)
    if not compile_repeated_layers(network):
        network.compile(dynamic=True)
    return network


def smoothquant_int8(
    network: torch.nn.Module, calibration: Iterable[Mapping[str, torch.Tensor]]
) -> torch.nn.Module:
    """``network`` with its linear layers, but those of its top :data:`FP32_TOP_LAYERS` decoder layers, smoothed
    on ``calibration``'s batches and quantised to int8 in place; eager, int8 runs at half fp32's speed."""
    import warnings

    import torch
    from torchao.prototype.smoothquant import SmoothQuantConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from llara_rag.encoding.compilation import repeated_layers

    layers = repeated_layers(network)
    kept = {id(module) for layer in layers[len(layers) - FP32_TOP_LAYERS :] for module in layer.modules()}

    def quantised(module: torch.nn.Module, _name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and id(module) not in kept

    def smoothquant(step: str) -> SmoothQuantConfig:
        # running maxima: calibration memory stays one vector a layer, however long the text
        return SmoothQuantConfig(
            Int8DynamicActivationInt8WeightConfig(),
            step=step,
            alpha=SMOOTHQUANT_ALPHA,
            use_running_absmax=True,
        )

    # A notice to torchao's developers at each compile; it changes nothing of what runs.
    warnings.filterwarnings("ignore", message=".*does not implement _stable_hash_for_caching")
    quantize_(network, smoothquant("prepare"), filter_fn=quantised)
    with torch.inference_mode():
        for batch in calibration:
            network(**batch)
    quantize_(network, smoothquant("convert"), filter_fn=quantised)
    return network
