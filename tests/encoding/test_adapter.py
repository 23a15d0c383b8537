"""The adapter directory: damaged files are named in one line, never a traceback from PEFT or pydantic."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from llara_rag.cli import main
from llara_rag.encoding.adapter import LLARA_CONFIG_FILE, PEFT_FILES, read_adapter_info
from llara_rag.encoding.encoder import LLaRAEncoder
from llara_rag.errors import AdapterError
from llara_rag.testing import build_tiny_backbone


@pytest.fixture(scope="module")
def adapter(tiny_backbone_dir, tmp_path_factory) -> Path:
    """A real adapter written by `llara-rag adapt` (one contrastive step) on a few documents."""
    docs = tmp_path_factory.mktemp("docs")
    for index, text in enumerate(
        ["cats purr when happy. dogs bark when happy.", "rust is a language. python is."]
    ):
        (docs / f"{index}.txt").write_text(text)
    output = tmp_path_factory.mktemp("adapter") / "adapter"
    argv = ["adapt", str(docs), "--output", str(output), "--base", str(tiny_backbone_dir)]
    assert main([*argv, "--stages", "contrastive", "--contrastive-steps", "1", "--whitening-dims", "0"]) == 0
    return output


def _damaged(adapter: Path, tmp_path: Path, name: str, content: bytes | None) -> Path:
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(adapter, copy)
    if content is None:
        (copy / name).unlink()
    else:
        (copy / name).write_bytes(content)
    return copy


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (LLARA_CONFIG_FILE, b"{not json", "llara_config.json is unreadable"),
        (LLARA_CONFIG_FILE, b'{"backbone": 3}', "llara_config.json is unreadable"),
        (PEFT_FILES[0], b"[1, 2", "adapter_config.json is unreadable"),
        (PEFT_FILES[1], b"\x00\x01 random bytes", "adapter_model.safetensors is unreadable"),
    ],
)
def test_a_damaged_file_is_named(tiny_backbone_dir, adapter, tmp_path, name, content, message):
    damaged = _damaged(adapter, tmp_path, name, content)
    with pytest.raises(AdapterError, match=message) as caught:
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(damaged))
    assert "\n" not in str(caught.value)


def test_a_truncated_weights_file_is_named(tiny_backbone_dir, adapter, tmp_path):
    weights = (adapter / PEFT_FILES[1]).read_bytes()
    damaged = _damaged(adapter, tmp_path, PEFT_FILES[1], weights[: len(weights) // 2])
    with pytest.raises(AdapterError, match="adapter_model.safetensors is unreadable"):
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(damaged))


def test_loading_an_adapter_shows_no_warning_from_inside_peft(tiny_backbone_dir, adapter, tmp_path):
    """peft reads transformers' deprecated ``is_gradient_checkpointing``; users must not see that on each load."""
    import shutil
    import warnings

    copy = shutil.copytree(adapter, tmp_path / "copy")  # a new folder: loaded afresh, not shared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(copy))
    assert [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)] == []


def test_without_llara_config_a_mismatch_says_why_it_was_not_caught(adapter, tmp_path):
    damaged = _damaged(adapter, tmp_path, LLARA_CONFIG_FILE, None)
    assert read_adapter_info(damaged) is None
    other = build_tiny_backbone(tmp_path / "other", hidden_size=48)
    with pytest.raises(AdapterError, match="has no llara_config.json") as caught:
        LLaRAEncoder(model=str(other), adapter=str(damaged))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 600


def test_the_default_adapter_is_the_shipped_one_on_the_default_backbone_only(tiny_backbone_dir):
    from llara_rag.encoding.adapter import DEFAULT_ADAPTER
    from llara_rag.encoding.encoder import EncoderConfig

    assert EncoderConfig().adapter == str(DEFAULT_ADAPTER)
    assert EncoderConfig(adapter="none").adapter is None
    assert EncoderConfig(adapter=None).adapter is None
    assert EncoderConfig(model=str(tiny_backbone_dir)).adapter is None
    assert EncoderConfig(adapter="runs/mine").adapter == "runs/mine"


def test_saved_configurations_name_the_shipped_adapter_not_its_install_path():
    from llara_rag.encoding.adapter import DEFAULT, DEFAULT_ADAPTER, adapter_name
    from llara_rag.encoding.encoder import EncoderConfig

    assert adapter_name(EncoderConfig().adapter) == DEFAULT
    assert EncoderConfig(adapter=adapter_name(str(DEFAULT_ADAPTER))).adapter == str(DEFAULT_ADAPTER)
    assert adapter_name("runs/mine") == "runs/mine" and adapter_name(None) is None


def test_the_shipped_adapter_is_compact_and_names_its_backbone_and_data():
    from safetensors import safe_open

    from llara_rag.encoding.adapter import DEFAULT_ADAPTER
    from llara_rag.encoding.backbone import DEFAULT_MODEL

    assert sum(path.stat().st_size for path in DEFAULT_ADAPTER.iterdir()) <= 20 * 2**20
    with safe_open(str(DEFAULT_ADAPTER / PEFT_FILES[1]), framework="pt") as weights:
        dtypes = {str(weights.get_slice(name).get_dtype()) for name in weights.keys()}  # noqa: SIM118
    assert dtypes == {"F16"}
    info = read_adapter_info(DEFAULT_ADAPTER)
    assert info is not None and info.backbone == DEFAULT_MODEL
    assert set(info.training) >= {"command", "unsupervised", "supervised"}
    assert "qrels/train.tsv" in (DEFAULT_ADAPTER / "README.md").read_text(encoding="utf-8")


def test_model_cards_name_a_hub_base_model_when_there_is_one(adapter, tmp_path):
    from huggingface_hub import ModelCard

    from llara_rag.encoding.adapter import DEFAULT_ADAPTER, write_model_card

    shipped = ModelCard.load(DEFAULT_ADAPTER / "README.md")
    assert shipped.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert shipped.data.library_name == "peft" and "llara" in shipped.data.tags
    local = ModelCard.load(adapter / "README.md")  # trained on a local folder: nothing the Hub can link
    assert local.data.base_model is None and "# llara-rag adapter (adaptation)" in local.text
    info = read_adapter_info(adapter)
    write_model_card(tmp_path, info.model_copy(update={"backbone": "BAAI/LLARA-passage"}), "An adapter.")
    assert ModelCard.load(tmp_path / "README.md").data.base_model == "BAAI/LLARA-passage"


class FolderHub:
    """A stand-in for ``HfApi`` whose repositories are local folders: pushing is tested offline."""

    def __init__(self, root: Path, fail: Exception | None = None) -> None:
        self.root, self.fail = root, fail

    def create_repo(self, repo_id: str, **_: object) -> str:
        if self.fail:
            raise self.fail
        return f"file://{self.root / repo_id}"

    def upload_folder(
        self, *, folder_path: str, repo_id: str, ignore_patterns: list[str], **_: object
    ) -> None:
        import shutil

        shutil.copytree(folder_path, self.root / repo_id, ignore=shutil.ignore_patterns(*ignore_patterns))


def test_pushed_adapter_loads_from_its_target_with_the_same_vectors(tiny_backbone_dir, adapter, tmp_path):
    from llara_rag.encoding.adapter import push_adapter

    url = push_adapter(adapter, "me/cats", api=FolderHub(tmp_path))
    pushed = tmp_path / "me" / "cats"
    assert url == f"file://{pushed}"
    assert {path.name for path in pushed.iterdir()} == {path.name for path in adapter.iterdir()}
    original = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(adapter))
    copy = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(pushed))
    assert copy.fingerprint == original.fingerprint
    assert (copy.encode_queries(["why do cats purr"]) == original.encode_queries(["why do cats purr"])).all()


def test_push_refuses_an_incomplete_adapter_and_names_a_network_failure(adapter, tmp_path, capsys):
    import requests

    from llara_rag.encoding.adapter import push_adapter
    from llara_rag.errors import PublishError

    assert main(["push", str(tmp_path / "missing"), "me/cats"]) == 2
    assert "does not exist" in capsys.readouterr().err
    offline = FolderHub(tmp_path, fail=requests.ConnectionError("Failed to resolve 'huggingface.co'"))
    with pytest.raises(
        PublishError, match=r"Cannot push .* \(Failed to resolve 'huggingface.co'\); check the"
    ):
        push_adapter(adapter, "me/cats", api=offline)


def test_an_encoder_reads_its_adapter_folder_once(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Config, digest and whitening are read once per encoder load (each was read up to three times)."""
    import numpy as np
    from transformers import AutoConfig

    from llara_rag.encoding import adapter as adapter_module
    from llara_rag.encoding.encoder import EncoderConfig
    from llara_rag.encoding.whitening import Whitening
    from llara_rag.testing import write_random_adapter

    folder = write_random_adapter(tiny_backbone_dir, tmp_path / "adapter")
    hidden = AutoConfig.from_pretrained(tiny_backbone_dir).hidden_size
    rng = np.random.default_rng(0)
    Whitening.fit(rng.normal(size=(16, hidden)), rng.normal(size=(16, hidden)), 2).save(folder)
    config = EncoderConfig(model=str(tiny_backbone_dir), adapter=str(folder))
    reads = {"read_adapter_info": 0, "adapter_digest": 0, "load": 0}

    def counted(owner: object, name: str) -> None:
        original = getattr(owner, name)

        def count(*args: object, **kwargs: object) -> object:
            reads[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, count)

    counted(adapter_module, "read_adapter_info")
    counted(adapter_module, "adapter_digest")
    counted(Whitening, "load")
    encoder = LLaRAEncoder(config)
    assert reads == {"read_adapter_info": 1, "adapter_digest": 1, "load": 1}
    assert encoder.whitening is not None and encoder.dimension == 2
