from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llara_rag.errors import AdapterError
from llara_rag.training import AdaptationArguments
from llara_rag.training.interpolation import interpolate_adapter
from llara_rag.training.unsupervised import interpolation_step

ROWS = [3, 4, 5]


def _lora(
    backbone: Path, directory: Path, rank: int, alpha: int, seed: int, targets: str = "all-linear"
) -> Path:
    """A LoRA with random A and B and moved special-token rows, as training leaves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(backbone)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=targets,
        trainable_token_indices=ROWS,
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "trainable_tokens_delta" in name:
                parameter.add_(torch.randn_like(parameter))
    peft_model.save_pretrained(directory)
    return directory


def _merged(backbone: Path, adapter: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(backbone), adapter)
    return {name: tensor.detach().clone() for name, tensor in model.merge_and_unload().state_dict().items()}


def test_the_interpolated_adapter_merges_to_the_interpolated_weights(
    tiny_backbone_dir: Path, tmp_path: Path
) -> None:
    """Ranks and LoRA scalings may differ: the result merges, weight for weight, to the interpolation of
    what each merges to, special-token rows included."""
    start = _lora(tiny_backbone_dir, tmp_path / "start", rank=2, alpha=4, seed=0)
    trained = _lora(tiny_backbone_dir, tmp_path / "trained", rank=4, alpha=16, seed=1)
    expected = {
        name: 0.7 * tensor + 0.3 * other
        for (name, tensor), other in zip(
            _merged(tiny_backbone_dir, trained).items(),
            _merged(tiny_backbone_dir, start).values(),
            strict=True,
        )
    }
    interpolate_adapter(trained, start=start, share=0.3)
    assert json.loads((trained / "adapter_config.json").read_text())["r"] == 6
    actual = _merged(tiny_backbone_dir, trained)
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=1e-5, msg=name)
    embeddings = next(name for name in expected if "embed_tokens" in name)
    assert not torch.equal(actual[embeddings][ROWS], _merged(tiny_backbone_dir, start)[embeddings][ROWS])


def test_adapters_that_do_not_fit_are_refused(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    start = _lora(tiny_backbone_dir, tmp_path / "start", rank=2, alpha=4, seed=0, targets=["q_proj"])
    trained = _lora(tiny_backbone_dir, tmp_path / "trained", rank=2, alpha=4, seed=1)
    with pytest.raises(AdapterError, match="differ in target_modules.*--start-share 0"):
        interpolate_adapter(trained, start=start, share=0.5)


def test_the_step_runs_only_with_a_start_adapter_and_a_share(tmp_path: Path) -> None:
    def arguments(share: float) -> AdaptationArguments:
        return AdaptationArguments(output_dir=str(tmp_path), start_share=share, stages="ebae-ebar")

    assert interpolation_step(arguments(0.5), str(tmp_path)) is not None
    assert interpolation_step(arguments(0.5), None) is None, "a fresh LoRA has nothing to go back to"
    assert interpolation_step(arguments(0.0), str(tmp_path)) is None
    with pytest.raises(Exception, match="--start-share 1.0"):
        arguments(1.0)
