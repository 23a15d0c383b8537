"""The special-token rows applied from the frozen matrix give peft's values and gradients, tied or not."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llara_rag.encoding.backbone import load_backbone
from llara_rag.encoding.encoder import PromptInputs
from llara_rag.testing import build_tiny_backbone
from llara_rag.training import AdaptationArguments
from llara_rag.training.data.groups import GroupCollator, GroupSample
from llara_rag.training.losses.info_nce import embed
from llara_rag.training.losses.token_rows import TokenRows, lm_head
from llara_rag.training.trainer import lora_model

TEXTS = [("cats purr", "cats purr when happy and dogs bark"), ("wing lift", "wing lift air pressure flow")]


def _model(tmp_path, tie: bool, train_special_tokens: bool = True):
    directory = build_tiny_backbone(tmp_path / "backbone", tie_embeddings=tie)
    backbone = load_backbone(str(directory), device="cpu")
    args = AdaptationArguments(
        output_dir=str(tmp_path / "run"), model=str(directory), train_special_tokens=train_special_tokens
    )
    model = lora_model(backbone, args)
    torch.manual_seed(0)
    for parameter in model.parameters():
        if parameter.requires_grad:  # away from peft's zero init and the rows' shared start
            parameter.data.add_(0.05 * torch.randn_like(parameter))
    batch = GroupCollator(PromptInputs(backbone.tokenizer, backbone.special_ids), 16, 32)(
        [GroupSample(q, (p,), (i,)) for i, (q, p) in enumerate(TEXTS)]
    )
    inputs = {k: batch[f"passage_{k}"] for k in ("input_ids", "attention_mask", "position_ids")}
    return model, inputs


def _gradients(model, loss: torch.Tensor, hidden: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Gradients of ``loss`` for the model's parameters (and ``hidden``, when given)."""
    model.zero_grad(set_to_none=True)
    if hidden is not None:
        hidden.grad = None
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads if hidden is None else {**grads, "hidden": hidden.grad.clone()}


def _peft_embed(model, inputs) -> torch.Tensor:
    """The reference: the same pooling over peft's own forward pass from token ids."""
    import torch.nn.functional as F

    from llara_rag.encoding.encoder import pool_special

    hidden = model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[-1]
    return F.normalize(pool_special(hidden, inputs["attention_mask"]), dim=-1)


@pytest.mark.parametrize("tie", [True, False])
def test_embeddings_and_logits_match_peft_with_the_same_gradients(tmp_path, tie):
    model, inputs = _model(tmp_path, tie)
    rows = TokenRows.of(model)
    assert rows is not None and rows.tied == tie
    special = torch.isin(inputs["input_ids"], rows.token_ids)
    assert special.any() and (~special).any()

    fast, reference = embed(model, inputs), _peft_embed(model, inputs)
    torch.testing.assert_close(fast, reference)
    weights = torch.randn_like(reference)
    fast_grads, reference_grads = (_gradients(model, (v * weights).sum()) for v in (fast, reference))
    assert fast_grads.keys() == reference_grads.keys()
    assert any("trainable_tokens" in name for name in fast_grads), "the rows are trained"
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)

    hidden = torch.randn(3, 5, model.config.hidden_size, requires_grad=True)
    fast_logits, peft_logits = lm_head(model, rows)(hidden), model.get_output_embeddings()(hidden)
    torch.testing.assert_close(fast_logits, peft_logits)
    weights = torch.randn_like(peft_logits)
    fast_grads, reference_grads = (
        _gradients(model, (v * weights).sum(), hidden) for v in (fast_logits, peft_logits)
    )
    assert fast_grads.keys() == reference_grads.keys()
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_untrained_rows_keep_peft_path(tmp_path):
    model, _ = _model(tmp_path, tie=True, train_special_tokens=False)
    assert TokenRows.of(model) is None
