"""Precision: what auto picks per CPU, what each precision loads, refusals, and every door passing it on."""

from __future__ import annotations

import copy
import importlib.util
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from llara_rag.cli import build_parser
from llara_rag.cli.common import encoder_config
from llara_rag.encoding import precision as precision_module
from llara_rag.encoding.compilation import repeated_layers
from llara_rag.encoding.encoder import EncoderConfig, EncoderSettings, LLaRAEncoder
from llara_rag.encoding.precision import auto_precision, instruction_set, resolve_precision
from llara_rag.errors import UnsupportedPrecisionError
from llara_rag.ranking.cache import VectorCache
from llara_rag.ranking.systems import llara_system

EPYC = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
HASWELL = frozenset({"avx2", "fma"})
NEHALEM = frozenset({"sse4_2"})


def test_auto_picks_int8_where_it_was_measured_and_can_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert auto_precision(EPYC) == "int8"
    assert auto_precision(HASWELL) == "fp32", "int8 without VNNI ran slower than fp32 on an AVX2 host"
    assert auto_precision(NEHALEM) == "fp32", "no table row measured a CPU without AVX2"
    assert auto_precision(frozenset()) == "fp32"
    monkeypatch.setattr(precision_module, "int8_missing", lambda: "torchao is not installed (fix)")
    with caplog.at_level(logging.INFO, logger="llara_rag.encoding.precision"):
        assert auto_precision(EPYC) == "fp32"
    assert "would pick int8" in caplog.text and "torchao is not installed (fix)" in caplog.text


def test_instruction_set_names_the_vector_extensions() -> None:
    assert instruction_set(EPYC) == "AVX512+AVX512_VNNI+AVX512_BF16"
    assert instruction_set(HASWELL) == "AVX2"
    assert instruction_set(frozenset()) == "unknown"


@pytest.mark.parametrize(("flags", "expected"), [(EPYC, "int8"), (NEHALEM, "fp32")])
def test_auto_resolves_on_the_cpu_when_the_config_is_made(
    monkeypatch: pytest.MonkeyPatch, tiny_backbone_dir: Path, flags: frozenset[str], expected: str
) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: flags)
    config = EncoderConfig(model=str(tiny_backbone_dir), adapter=None, device="cpu", precision="auto")
    assert config.precision == expected
    assert config.dtype == "float32"


def test_int8_without_vnni_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision_module, "int8_missing", lambda: None)
    for flags, slow in ((HASWELL, True), (EPYC, False)):
        monkeypatch.setattr(precision_module, "cpu_flags", lambda flags=flags: flags)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="llara_rag.encoding.precision"):
            assert resolve_precision("int8", "cpu") == "int8"
        assert ("ran slower than fp32" in caplog.text) is slow


def test_auto_on_a_gpu_keeps_the_dtype_rule() -> None:
    assert resolve_precision("auto", "cuda:0") is None
    assert resolve_precision(None, "cpu") is None


def test_bf16_without_native_bf16_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: HASWELL)
    with caplog.at_level(logging.WARNING, logger="llara_rag.encoding.precision"):
        assert resolve_precision("bf16", "cpu") == "bf16"
    assert "without native bf16 (AVX2" in caplog.text and "--precision fp32 or auto" in caplog.text
    caplog.clear()
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: EPYC)
    with caplog.at_level(logging.WARNING, logger="llara_rag.encoding.precision"):
        resolve_precision("bf16", "cpu")
    assert not caplog.text


def test_bad_precisions_are_refused_before_a_model_loads(tiny_backbone_dir: Path) -> None:
    with pytest.raises(UnsupportedPrecisionError, match="pass one of the two"):
        EncoderConfig(model=str(tiny_backbone_dir), adapter=None, precision="bf16", dtype="float32")
    with pytest.raises(ValidationError, match="'auto', 'fp32', 'bf16' or 'int8'"):
        EncoderConfig(model=str(tiny_backbone_dir), adapter=None, precision="int4")


def test_bf16_loads_bf16_weights_and_keeps_the_fingerprint(tiny_backbone_dir: Path) -> None:
    """bf16 was measured interchangeable with fp32 (nDCG@10 within 0.005), so a collection takes either."""
    texts = ["dense retrieval with special tokens", "a second passage about something else entirely"]
    full = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=None, device="cpu", precision="fp32")
    half = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=None, device="cpu", precision="bf16")
    assert half.backbone.network.dtype == torch.bfloat16
    assert full.backbone.network.dtype == torch.float32
    a, b = full.encode_passages(texts), half.encode_passages(texts)
    assert b.dtype == np.float32
    assert np.sum(a * b, axis=1).min() > 0.99
    assert not np.array_equal(a, b)
    assert half.fingerprint == full.fingerprint


def test_int8_is_refused_in_one_line_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnsupportedPrecisionError, match="runs on CPUs"):
        resolve_precision("int8", "cuda:0")
    with pytest.raises(UnsupportedPrecisionError, match="runs on CPUs"):
        resolve_precision("int8", "cpu", ("cpu", "cuda:1"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real_find_spec(name, *a)
    )
    with pytest.raises(UnsupportedPrecisionError, match=r"llara-rag\[int8\]"):
        resolve_precision("int8", "cpu")
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UnsupportedPrecisionError, match="C\\+\\+ compiler"):
        resolve_precision("int8", "cpu")


def test_int8_quantises_the_merged_model_and_runs_it_compiled(
    tiny_backbone_dir: Path, tmp_path: Path
) -> None:
    """int8 loads fp32 weights, then quantises the linear layers of every decoder layer but the top one and
    compiles the transformer's layers (one graph for the int8 layers, one for the fp32 top); its vectors stay
    close to fp32's: the same fingerprint, their own cache entry."""
    from torch._dynamo.utils import counters
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig  # noqa: F401 - the extra is installed

    texts = ["dense retrieval with special tokens", "a second passage about something else entirely"]
    base = {"model": str(tiny_backbone_dir), "adapter": None, "device": "cpu"}
    full = LLaRAEncoder(**base, precision="fp32")
    eight = LLaRAEncoder(**base, precision="int8")
    assert eight.config.dtype == "float32" and eight.precision == "int8" and full.precision == "fp32"
    assert eight.backbone is not full.backbone and full.backbone.inference is None
    torch._dynamo.reset()
    counters.clear()
    a, b = full.encode_passages(texts), eight.encode_passages(texts)
    layers = eight.backbone.network.config.num_hidden_layers
    assert layers >= 2 and counters["stats"]["unique_graphs"] == 2, (
        "one graph for all int8 layers, one for the top"
    )
    stack = repeated_layers(eight.backbone.network)
    kinds = [
        {type(module.weight) for module in layer.modules() if isinstance(module, torch.nn.Linear)}
        for layer in stack
    ]
    assert kinds[-1] == {torch.nn.Parameter} and all(torch.nn.Parameter not in kind for kind in kinds[:-1])
    assert np.sum(a * b, axis=1).min() > 0.98
    assert not np.array_equal(a, b)
    assert eight.fingerprint == full.fingerprint, "measured interchangeable: a collection takes either"
    cache = VectorCache(tmp_path)
    assert llara_system(eight.config, cache).settings != llara_system(full.config, cache).settings


def test_int8_moves_outlier_channels_into_the_weights_before_quantising() -> None:
    """SmoothQuant's calibration: an input channel a hundred times larger than the others (as LLM activations
    have) costs plain int8 most of its precision; smoothed, the same layers stay many times closer."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from llara_rag.encoding.precision import smoothquant_int8

    class TwoLayers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = torch.nn.Linear(64, 64), torch.nn.Linear(64, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.second(torch.relu(self.first(x)))

    torch.manual_seed(0)
    network, x = TwoLayers(), torch.randn(32, 64)
    x[:, 3] *= 100
    with torch.no_grad():  # as in LLMs, the channel's weights are small: it contributes like the others
        network.first.weight[:, 3] /= 100
    with torch.inference_mode():
        exact = network(x)
        plain = copy.deepcopy(network)
        quantize_(plain, Int8DynamicActivationInt8WeightConfig())
        smoothed = smoothquant_int8(copy.deepcopy(network), [{"x": x}])

        def error(module: torch.nn.Module) -> float:
            return float((module(x) - exact).norm() / exact.norm())

        assert error(smoothed) < error(plain) / 5


def test_the_vector_cache_keeps_precisions_apart(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    cache = VectorCache(tmp_path)
    base = {"model": str(tiny_backbone_dir), "adapter": None, "device": "cpu"}
    full = llara_system(EncoderConfig(**base, precision="fp32"), cache)
    half = llara_system(EncoderConfig(**base, precision="bf16"), cache)
    default = llara_system(EncoderConfig(**base), cache)
    assert half.settings != full.settings
    assert default.settings == full.settings, "fp32 keys made before the setting stay valid"


@pytest.mark.parametrize("command", ["embed", "eval", "index", "query", "chat", "serve"])
def test_every_encoding_command_takes_precision(command: str) -> None:
    argv = [command, *(["docs"] if command == "index" else ["q"] if command == "query" else [])]
    argv = [*argv, "x"] if command in ("embed", "eval") else argv
    args = build_parser(argv).parse_args([*argv, "--precision", "bf16", "--device", "cpu"])
    assert args.precision == "bf16"
    with pytest.raises(SystemExit):
        build_parser(argv).parse_args([*argv, "--precision", "int4"])


def test_the_cli_flag_reaches_the_encoder_config(tiny_backbone_dir: Path) -> None:
    """Bulk commands default to auto; a one-off query to fp32 on a CPU, which compiles nothing."""
    options = ["--model", str(tiny_backbone_dir), "--adapter", "none", "--device", "cpu"]
    embed, query = ["embed", "x", *options], ["query", "a question", *options]
    assert encoder_config(build_parser(embed).parse_args([*embed, "--precision", "bf16"])).dtype == "bfloat16"
    assert encoder_config(build_parser(embed).parse_args(embed)).precision == auto_precision()
    assert encoder_config(build_parser(query).parse_args(query)).precision is None


def test_the_framework_settings_pass_precision_on(tiny_backbone_dir: Path) -> None:
    model = str(tiny_backbone_dir)
    settings = EncoderSettings(model_name=model, adapter=None, device="cpu", precision="bf16")
    assert settings.to_encoder_config(batch_size=4).dtype == "bfloat16"


def test_llamaindex_and_chroma_doors_run_at_the_precision_asked(tiny_backbone_dir: Path) -> None:
    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.indexing.chroma_embedding import MACHINE_SETTINGS, LLaRAEmbeddingFunction

    model = str(tiny_backbone_dir)
    embedding = LLaRAEmbedding(model_name=model, adapter=None, device="cpu", precision="bf16")
    assert embedding.encoder.precision == "bf16"
    function = LLaRAEmbeddingFunction(model_name=model, adapter=None, device="cpu", precision="bf16")
    assert function.encoder.precision == "bf16"
    assert function.fingerprint == embedding.fingerprint
    assert "precision" in MACHINE_SETTINGS and "precision" not in function.get_config()


def test_torchaos_import_notices_stay_out_of_every_command() -> None:
    """peft imports torchao when the int8 extra is installed; its GPU-kernel notices are noise on a CPU."""
    code = "import logging; logging.basicConfig(); import llara_rag.encoding.precision; import peft"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "torchao" not in result.stderr and "register_constant" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("indexed", "device", "expected"),
    [("fp32", "cpu", "fp32"), ("int8", "cpu", "auto"), (None, "cpu", "auto"), ("fp32", "cuda", "auto")],
)
def test_auto_encodes_at_the_precision_of_the_collection_it_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, indexed: str | None, device: str, expected: str
) -> None:
    """int8 queries on fp32 vectors moved nDCG@10 more than int8 on both sides: where ``auto`` picks int8, a
    collection indexed at fp32 is read at fp32; an int8 or new one, or a GPU (its dtype rule), keep ``auto``."""
    from llara_rag.cli.common import embedding, store_config
    from llara_rag.encoding import embedding as embedding_module
    from llara_rag.indexing.store import ModelIdentity, find_collection, open_store

    monkeypatch.setattr(precision_module, "cpu_flags", lambda: EPYC)
    monkeypatch.setattr(precision_module, "int8_missing", lambda: None)
    monkeypatch.setattr(embedding_module, "LLaRAEmbedding", lambda **settings: settings)
    argv = ["query", "q", "--device", device]
    args = build_parser(argv).parse_args([*argv, "--db", str(tmp_path), "--precision", "auto"])
    store = store_config(args)
    if indexed is not None:
        pin = ModelIdentity(
            fingerprint="f" * 16, dimension=8, model="m", precision=indexed if indexed == "int8" else None
        )
        open_store(store, pin)
    assert embedding(args, find_collection(store))["precision"] == expected
