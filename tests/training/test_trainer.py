"""The adaptation trainer: a loadable adapter, atomic output, resume, and the collapse guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llara_rag.encoding.adapter import (
    DEFAULT_ADAPTER,
    DEFAULT_UNSUPERVISED,
    LLARA_CONFIG_FILE,
    SHIPPED,
    WHITENING_FILE,
    TrainedLengths,
    adapter_digest,
    read_adapter_info,
)
from llara_rag.encoding.backbone import DEFAULT_MODEL
from llara_rag.encoding.encoder import LLaRAEncoder
from llara_rag.encoding.whitening import default_dimensions
from llara_rag.errors import AdapterError, EmbeddingCollapseError
from llara_rag.training import AdaptationArguments, adapt
from llara_rag.training.contrastive import start_record
from llara_rag.training.trainer import COSINE_METRIC, CollapseGuard, start_run

TEXTS = [
    "cats purr when happy and dogs bark when happy . " * 3,
    "rust is a systems programming language . python is a language . " * 3,
    "wing lift air pressure flow . the wing and the air flow . " * 3,
    "diabetes insulin . the stock market fell on monday . " * 3,
]


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return path


def _args(tiny_backbone_dir: Path, checkpoints: Path, **overrides: object) -> AdaptationArguments:
    fields = {
        "output_dir": str(checkpoints),
        "model": str(tiny_backbone_dir),
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "window_tokens": 8,
        "learning_rate": 5e-2,
        "logging_steps": 1,
        "save_steps": 2,
        "disable_tqdm": True,
        "remove_stopwords": False,
        "stages": "ebae-ebar",
    }
    return AdaptationArguments(**{**fields, **overrides})


@pytest.fixture(scope="module")
def trained(tiny_backbone_dir, docs, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    result = adapt(docs, root / "adapter", _args(tiny_backbone_dir, root / "checkpoints"))
    return root, result


@pytest.fixture(scope="module")
def unwhitened(trained, tmp_path_factory) -> Path:
    """The trained adapter without its whitening: the network's own vectors."""
    import shutil

    copy = tmp_path_factory.mktemp("unwhitened") / "adapter"
    shutil.copytree(trained[1].adapter, copy)
    (copy / WHITENING_FILE).unlink()
    return copy


def test_adapter_loads_and_changes_embeddings(tiny_backbone_dir, trained, unwhitened):
    _, result = trained
    info = read_adapter_info(result.adapter)
    assert info is not None and info.stage == "adaptation"
    assert info.trained_lengths == TrainedLengths(query=8, passage=8), "EBAE and EBAR read one 8-token window"
    stage = info.training["stages"]["ebae-ebar"]
    assert stage["steps"] == 4 and info.training["corpus"]["documents"] == len(TEXTS)
    assert COSINE_METRIC in stage["last_log"]
    assert (result.adapter / "README.md").read_text().count("llara-rag adapter") == 1
    base = LLaRAEncoder(model=str(tiny_backbone_dir))
    adapted = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(unwhitened))
    texts = ["cats purr", "the wing"]
    assert np.abs(base.encode_passages(texts) - adapted.encode_passages(texts)).max() > 1e-3
    special = list(base.backbone.special_ids.all)
    base_rows = base.backbone.network.get_input_embeddings().weight[special]
    adapted_rows = adapted.backbone.network.get_input_embeddings().weight[special]
    assert not torch.allclose(base_rows, adapted_rows)
    assert adapted.backbone.network.get_output_embeddings().weight.data_ptr() == (
        adapted.backbone.network.get_input_embeddings().weight.data_ptr()
    ), "merging must keep SmolLM2-style tied embeddings tied"
    from safetensors import safe_open

    vocabulary = base.backbone.network.get_input_embeddings().weight.shape[0]
    with safe_open(result.adapter / "adapter_model.safetensors", "pt") as weights:
        rows = {name: weights.get_slice(name).get_shape()[0] for name in weights.keys()}  # noqa: SIM118
    assert vocabulary not in rows.values(), "the adapter must store the 16 new rows, not the whole vocabulary"
    assert len(special) in rows.values()


def test_adapter_carries_the_domain_whitening_the_encoder_applies(tiny_backbone_dir, trained, unwhitened):
    _, result = trained
    assert (result.adapter / WHITENING_FILE).is_file()
    whitened = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(result.adapter))
    plain = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(unwhitened))
    assert whitened.dimension == default_dimensions(plain.dimension)
    assert whitened.fingerprint != plain.fingerprint
    texts = ["cats purr", "the wing and the air"]
    for side in ("passage", "query"):
        expected = whitened.whitening(plain.encode(texts, side), side)
        np.testing.assert_allclose(whitened.encode(texts, side), expected, atol=1e-5)


def test_resume_continues_from_the_last_checkpoint(tiny_backbone_dir, docs, trained):
    root, _ = trained
    args = _args(tiny_backbone_dir, root / "checkpoints", max_steps=6)
    result = adapt(docs, root / "resumed", args)
    history = [
        e
        for e in json.loads((root / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())[
            "log_history"
        ]
        if "loss" in e
    ]
    assert result.training["stages"]["ebae-ebar"]["steps"] == 6
    assert [e["step"] for e in history] == [1, 2, 3, 4, 5, 6]  # steps 1-4 come from the first run's state


def test_interrupted_run_leaves_no_loadable_adapter(tiny_backbone_dir, docs, tmp_path, monkeypatch):
    from llara_rag.training import trainer as trainer_module

    def fail(*_: object, **__: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "write_model_card", fail)  # dies after the weights are written
    with pytest.raises(KeyboardInterrupt):
        adapt(docs, tmp_path / "adapter", _args(tiny_backbone_dir, tmp_path / "checkpoints", max_steps=1))
    assert not (tmp_path / "adapter").exists()
    with pytest.raises(AdapterError):
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(tmp_path / "adapter"))


def test_collapse_guard_stops_training_without_an_adapter(tiny_backbone_dir, docs, tmp_path):
    args = _args(
        tiny_backbone_dir, tmp_path / "checkpoints", max_steps=8, collapse_threshold=-1.0, collapse_patience=2
    )
    with pytest.raises(EmbeddingCollapseError, match="step 2"):
        adapt(docs, tmp_path / "adapter", args)
    assert not (tmp_path / "adapter").exists()
    assert not (tmp_path / LLARA_CONFIG_FILE).exists()


def test_special_token_rows_learn_at_their_own_rate(tiny_backbone_dir, docs, tmp_path):
    from safetensors.torch import load_file

    from llara_rag.encoding.backbone import load_backbone

    backbone = load_backbone(str(tiny_backbone_dir), device="cpu")
    start = backbone.network.get_input_embeddings().weight[list(backbone.special_ids.all)].detach()

    def train(scale: float) -> dict:
        # step 1 runs at the warm-up's learning rate 0, so step 2 is the only update, taken from the same state
        args = _args(
            tiny_backbone_dir,
            tmp_path / f"c{scale}",
            max_steps=2,
            learning_rate=1e-3,
            whitening_dims=0,
            special_tokens_lr_scale=scale,
        )
        adapt(docs, tmp_path / f"a{scale}", args, resume=False)
        return load_file(tmp_path / f"a{scale}" / "adapter_model.safetensors")

    plain, scaled = train(1.0), train(20.0)
    rows = next(name for name in plain if "trainable_tokens" in name)
    moved_plain = float((plain[rows] - start).abs().max())
    moved_scaled = float((scaled[rows] - start).abs().max())
    assert moved_plain > 0
    assert moved_scaled == pytest.approx(20 * moved_plain, rel=1e-3)
    for name in plain:
        if name != rows:
            assert torch.equal(plain[name], scaled[name]), name


def test_collapse_guard_counts_consecutive_logs_only():
    from transformers import TrainerControl, TrainerState

    guard = CollapseGuard(threshold=0.99, patience=2, stop=True)
    control, state = TrainerControl(), TrainerState()
    for step, value in enumerate([0.995, 0.90, 0.995], start=1):
        state.global_step = step
        guard.on_log(None, state, control, logs={COSINE_METRIC: value})
    assert guard.collapsed_at is None and not control.should_training_stop
    state.global_step = 4
    guard.on_log(None, state, control, logs={COSINE_METRIC: 0.999})
    assert guard.collapsed_at == 4 and control.should_training_stop


def test_cli_adapt(tiny_backbone_dir, docs, tmp_path, capsys):
    from llara_rag.cli import main

    output = tmp_path / "adapter"
    argv = ["adapt", str(docs), "--output", str(output), "--base", str(tiny_backbone_dir), "--max-steps", "1"]
    options = ["--batch-size", "2", "--window", "8", "--keep-stopwords", "--whitening-dims", "0"]
    options += ["--stages", "ebae-ebar"]
    assert (
        main(
            [
                *argv,
                *options,
                "--special-tokens-lr-scale",
                "3",
                "--target-weighting",
                "idf",
                "--lowercase",
                "on",
            ]
        )
        == 0
    )
    assert read_adapter_info(output).lowercase, "served lower-cased as it was trained"
    training = read_adapter_info(output).training["stages"]["ebae-ebar"]
    assert training["objective"]["target_weighting"] == "idf"
    hyperparameters = training["hyperparameters"]
    assert (hyperparameters["batch_size"], hyperparameters["special_tokens_lr_scale"]) == (2, 3.0)
    assert not (output / WHITENING_FILE).exists()
    assert (tmp_path / "adapter.checkpoints" / "records.jsonl").is_file()
    assert "Adapter written to" in capsys.readouterr().out
    assert main(["adapt", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    elsewhere = ["--output", str(tmp_path / "other")]
    assert main([*argv[:-2], "--max-steps", "1", "--whitening-dims", "999", *elsewhere]) == 2
    assert "--whitening-dims 999 exceeds the 32 dimensions" in capsys.readouterr().err
    assert main([*argv, "--special-tokens-lr-scale", "-1"]) == 2
    assert "--special-tokens-lr-scale -1.0 is negative" in capsys.readouterr().err
    assert main([*argv, "--lm-weight", "-1"]) == 2
    assert "lm_weight: Input should be greater than or equal to 0" in capsys.readouterr().err


def test_memory_is_pinned_only_for_an_accelerator(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    """Pinning host memory only speeds copies to a device; without one torch warns on every run."""
    import torch

    args = _args(tiny_backbone_dir, tmp_path)
    assert args.dataloader_pin_memory is torch.accelerator.is_available()


def test_adapt_continues_the_shipped_default_on_its_backbone_only(tiny_backbone_dir, tmp_path):
    def start(**fields: object):
        args = AdaptationArguments(output_dir=str(tmp_path / "checkpoints"), **fields)
        return start_run(args, tmp_path / "adapter", {}, resume=True, overwrite=False)

    shipped = start(model=DEFAULT_MODEL, stages="ebae-ebar,contrastive")
    assert shipped.start == str(DEFAULT_ADAPTER)
    assert shipped.recipe["start_adapter_digest"] == adapter_digest(DEFAULT_ADAPTER)
    assert shipped.recipe["start_share"] == 0.5
    assert start(model=DEFAULT_MODEL, start_adapter="none").start is None
    assert start(model=str(tiny_backbone_dir)).start is None, "the default adapter fits its backbone alone"
    assert start_record(shipped.start)["path"] == "default", "not this machine's install path"
    replayed = start(model=DEFAULT_MODEL)  # the default stages replay the default's supervised stage
    assert replayed.start == str(SHIPPED[DEFAULT_UNSUPERVISED]) and replayed.recipe["start_share"] == 0
    assert start_record(replayed.start)["path"] == DEFAULT_UNSUPERVISED
    info = read_adapter_info(replayed.start)
    assert info is not None and info.training == read_adapter_info(DEFAULT_ADAPTER).training["unsupervised"]


def test_a_restart_clears_every_stages_checkpoints_and_adapters(tmp_path):
    from llara_rag.training.trainer import clear_checkpoints

    kept = tmp_path / "records.jsonl"
    kept.write_text("{}")
    stale = ["checkpoint-4", "contrastive", "supervised", "ebae-ebar-adapter", "contrastive-adapter"]
    for name in stale:
        (tmp_path / name / "checkpoint-2").mkdir(parents=True)
    clear_checkpoints(str(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["records.jsonl"]


def test_training_flushes_subnormal_floats_and_restores_them_after():
    import torch

    from llara_rag.training.trainer import flushed_denormals

    subnormal = torch.tensor([1e-40])
    with flushed_denormals():
        assert (subnormal * 1.0).item() == 0.0
    assert (subnormal * 1.0).item() > 0.0


def test_an_adaptation_that_continues_an_adapter_ends_halfway_back_to_it(
    tiny_backbone_dir, docs, trained, tmp_path
):
    """--start-share 0.5 (the default without the supervised stage): the result is one LoRA of both ranks; 0 keeps the trained one."""
    start = trained[1].adapter
    rank = json.loads((start / "adapter_config.json").read_text())["r"]
    for share, expected in ((0.5, 2 * rank), (0.0, rank)):
        checkpoints = tmp_path / f"checkpoints-{share}"
        args = _args(
            tiny_backbone_dir,
            checkpoints,
            start_adapter=str(start),
            start_share=share,
            stop_on_collapse=False,
        )
        result = adapt(docs, tmp_path / f"adapter-{share}", args)
        assert json.loads((result.adapter / "adapter_config.json").read_text())["r"] == expected
        assert read_adapter_info(result.adapter).training["recipe"]["start_share"] == share


def test_compiled_layers_train_as_eager_and_leave_the_recipe_alone(
    tiny_backbone_dir, docs, trained, tmp_path
):
    from safetensors.torch import load_file
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = adapt(
        docs, tmp_path / "adapter", _args(tiny_backbone_dir, tmp_path / "checkpoints", compile_layers=True)
    )
    assert counters["stats"]["unique_graphs"] > 0, "the layers ran compiled"
    eager = trained[1]
    expected, actual = (load_file(r.adapter / "adapter_model.safetensors") for r in (eager, compiled))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():  # weights ~0.2; Adam turns float rounding into ~1e-4 after 4 steps
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=3e-4, msg=name)
    recipes = [read_adapter_info(result.adapter).training["recipe"] for result in (eager, compiled)]
    assert recipes[0] == recipes[1], "--compile changes speed, not what is learnt"


def test_bf16_trains_on_a_cpu_under_autocast_near_fp32(tiny_backbone_dir, docs, trained, tmp_path):
    """--bf16 on a CPU: the Trainer's CPU autocast (it refuses bf16 without a GPU unless told the CPU is
    meant); the weights stay fp32 and the loss follows fp32 training's."""
    from safetensors.torch import load_file

    args = _args(tiny_backbone_dir, tmp_path / "checkpoints", bf16=True)
    assert args.use_cpu
    half = adapt(docs, tmp_path / "adapter", args)
    expected, actual = (load_file(r.adapter / "adapter_model.safetensors") for r in (trained[1], half))
    assert all(tensor.dtype == torch.float32 for tensor in actual.values())
    assert any(not torch.equal(actual[name], tensor) for name, tensor in expected.items()), (
        "bf16 products ran"
    )
    full, bf16 = (
        read_adapter_info(r.adapter).training["stages"]["ebae-ebar"]["last_log"] for r in (trained[1], half)
    )
    assert bf16["loss"] == pytest.approx(full["loss"], rel=0.01), "the same loss after the same steps"


def test_compile_without_a_working_compiler_stops_before_training(
    tiny_backbone_dir, docs, tmp_path, monkeypatch
):
    from llara_rag.errors import InvalidInputError

    def no_compiler(*_: object, **__: object):
        def fail(*_: object) -> None:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return fail

    monkeypatch.setattr(torch, "compile", no_compiler)
    args = _args(tiny_backbone_dir, tmp_path / "checkpoints", compile_layers=True)
    with pytest.raises(InvalidInputError, match="C\\+\\+ compiler.*Run without --compile"):
        adapt(docs, tmp_path / "adapter", args)
    assert not (tmp_path / "adapter").exists()
