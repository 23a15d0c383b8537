"""The one-pass objective equals two separate passes, and its losses follow the spec's definitions."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from llara_rag.encoding.backbone import load_backbone
from llara_rag.training.data.corpus import Record
from llara_rag.training.losses.llara import (
    IGNORE,
    ExampleBuilder,
    ObjectiveConfig,
    bag_of_words_loss,
    collate_examples,
    compute_objective,
    mean_offdiagonal_cosine,
)

RECORDS = [
    Record("a", 0, "cats purr when happy and dogs bark", "the stock market fell on monday"),
    Record("b", 0, "rust is a systems programming language", None),
    Record("c", 1, "wing lift air pressure flow", "diabetes insulin"),
]


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    return load_backbone(str(tiny_backbone_dir))


def _two_pass(backbone, builder: ExampleBuilder, record: Record, config: ObjectiveConfig):
    """The reference computation: the encoder's passage input and query input run separately."""
    import torch.nn.functional as F

    model = backbone.network
    text = builder.head + builder.text_ids(record.text)
    passage = torch.tensor([text + builder.passage_block])
    query = torch.tensor([text + builder.query_block])
    passage_out = model(input_ids=passage, output_hidden_states=True)
    query_out = model(input_ids=query, output_hidden_states=True)
    ebae_targets = torch.tensor([builder.targets(builder.text_ids(record.text))])
    next_ids = builder.targets(builder.text_ids(record.next_text)) if record.next_text else []
    ebar_targets = torch.tensor([next_ids or [IGNORE]])
    labels = torch.full_like(passage, IGNORE)
    labels[0, len(builder.head) - 1 : len(text) - 1] = passage[0, len(builder.head) : len(text)]
    lm = F.cross_entropy(passage_out.logits[0], labels[0], ignore_index=IGNORE, reduction="sum")
    return {
        "lm_sum": lm,
        "lm_count": (labels != IGNORE).sum(),
        "ebae": bag_of_words_loss(passage_out.logits[:, -8:], ebae_targets),
        "ebar": bag_of_words_loss(query_out.logits[:, -8:], ebar_targets) if next_ids else None,
        "passage_state": F.normalize(passage_out.hidden_states[-1][0, -8:].mean(0), dim=-1),
        "query_state": F.normalize(query_out.hidden_states[-1][0, -8:].mean(0), dim=-1),
    }


def test_one_pass_equals_two_passes(backbone):
    config = ObjectiveConfig(remove_stopwords=False)
    builder = ExampleBuilder(
        backbone.tokenizer, backbone.special_ids, max_text_tokens=64, remove_stopwords=False
    )
    batch = collate_examples([builder(r) for r in RECORDS], pad_id=backbone.tokenizer.pad_token_id)
    with torch.no_grad():
        one = compute_objective(backbone.network, batch, config)
        refs = [_two_pass(backbone, builder, r, config) for r in RECORDS]
    for row, ref in enumerate(refs):
        assert torch.allclose(one.passage_embeddings[row], ref["passage_state"], atol=1e-5)
        assert torch.allclose(one.query_embeddings[row], ref["query_state"], atol=1e-5)
    lm = sum(r["lm_sum"] for r in refs) / sum(r["lm_count"] for r in refs)
    ebae = torch.stack([r["ebae"] for r in refs]).mean()
    ebar = torch.stack([r["ebar"] for r in refs if r["ebar"] is not None]).mean()
    assert one.lm.item() == pytest.approx(lm.item(), abs=1e-5)
    assert one.ebae.item() == pytest.approx(ebae.item(), abs=1e-5)
    assert one.ebar.item() == pytest.approx(ebar.item(), abs=1e-5)
    assert one.loss.item() == pytest.approx((lm + (ebae + ebar) / 2).item(), abs=1e-5)


def test_targets_are_unique_and_drop_special_and_stop_words(backbone):
    def words(ids: list[int]) -> list[str]:
        return sorted(backbone.tokenizer.decode([i]) for i in ids)

    builder = ExampleBuilder(
        backbone.tokenizer, backbone.special_ids, max_text_tokens=64, remove_stopwords=True
    )
    example = builder(Record("a", 0, "the cats and the cats purr . <s1>", "the dogs bark"))
    assert words(example.ebae_targets) == ["cats", "purr"]
    assert words(example.ebar_targets) == ["bark", "dogs"]
    assert builder(Record("b", 0, "cats", None)).ebar_targets == []
    keep = ExampleBuilder(
        backbone.tokenizer, backbone.special_ids, max_text_tokens=64, remove_stopwords=False
    )
    assert words(keep(Record("a", 0, "the cats the <s1>", None)).ebae_targets) == ["cats", "the"]


def test_a_lower_cased_builder_reads_and_predicts_lower_case(backbone):
    folded = ExampleBuilder(backbone.tokenizer, backbone.special_ids, max_text_tokens=64, lowercase=True)
    cased = ExampleBuilder(backbone.tokenizer, backbone.special_ids, max_text_tokens=64)
    shouted, plain = (
        Record("a", 0, "The CATS purr", "DOGS bark"),
        Record("a", 0, "the cats purr", "dogs bark"),
    )
    assert folded(shouted) == folded(plain) == cased(plain)
    assert cased(shouted) != cased(plain)


def test_bag_of_words_loss_uses_max_over_positions():
    logits = torch.full((1, 8, 5), -10.0)
    logits[0, 3, 2] = 10.0  # only one of the 8 positions predicts token 2
    good = bag_of_words_loss(logits, torch.tensor([[2]]))
    bad = bag_of_words_loss(logits, torch.tensor([[4]]))
    assert good.item() < 0.01 < bad.item()
    assert bag_of_words_loss(logits, torch.tensor([[IGNORE]])).item() == 0.0


def test_mean_offdiagonal_cosine():
    same = torch.nn.functional.normalize(torch.ones(4, 3), dim=-1)
    assert mean_offdiagonal_cosine(same) == pytest.approx(1.0)
    assert mean_offdiagonal_cosine(torch.eye(3)) == pytest.approx(0.0)


def test_idf_weighted_targets_count_rare_words_more(backbone):
    tokenizer = backbone.tokenizer
    builder = ExampleBuilder(tokenizer, backbone.special_ids, max_text_tokens=64, remove_stopwords=True)
    windows = ["cats purr", "cats bark", "cats sleep", "dogs bark"]
    builder.fit_idf(windows)
    (cats,) = tokenizer("cats", add_special_tokens=False)["input_ids"]
    (purr,) = tokenizer("purr", add_special_tokens=False)["input_ids"]
    assert builder.idf[cats] == pytest.approx(math.log(1 + 1.5 / 3.5))
    assert builder.idf[purr] == pytest.approx(math.log(1 + 3.5 / 1.5))
    example = builder(Record("a", 0, "cats purr", "cats"))
    assert dict(zip(example.ebae_targets, example.ebae_weights)) == {
        cats: builder.idf[cats],
        purr: builder.idf[purr],
    }
    (unseen,) = tokenizer("wing", add_special_tokens=False)["input_ids"]
    assert builder.weights([unseen]) == [max(builder.idf.values())]
    assert ExampleBuilder(tokenizer, backbone.special_ids, max_text_tokens=64).weights([cats, purr]) == [1, 1]


def test_bag_of_words_loss_weighs_targets():
    log_probs = torch.log_softmax(torch.arange(5.0), dim=-1)
    logits = log_probs.expand(1, 8, 5)
    targets = torch.tensor([[1, 3, IGNORE]])
    weighted = bag_of_words_loss(logits, targets, torch.tensor([[3.0, 1.0, 7.0]]))
    assert weighted.item() == pytest.approx(-(3 * log_probs[1] + log_probs[3]).item() / 4)
    uniform = bag_of_words_loss(logits, targets)
    assert uniform.item() == pytest.approx(-(log_probs[1] + log_probs[3]).item() / 2)


def test_a_batch_without_next_windows_weighs_ebae_alone(backbone):
    builder = ExampleBuilder(backbone.tokenizer, backbone.special_ids, max_text_tokens=16)
    batch = collate_examples([builder(RECORDS[1])], pad_id=0)
    config = ObjectiveConfig(lm_weight=1.0, bow_weight=2.0)
    with torch.no_grad():
        output = compute_objective(backbone.network, batch, config)
    assert output.ebar.item() == 0.0
    assert output.loss.item() == pytest.approx(output.lm.item() + 2.0 * output.ebae.item(), rel=1e-6)


def test_the_head_on_needed_positions_equals_full_logits_with_lora_and_token_rows(
    tiny_backbone_dir, tmp_path
):
    """Logits computed only where losses read them: same loss and same gradients as from every position,
    through peft's LoRA and its trainable special-token rows on the tied head."""
    import torch.nn.functional as F

    from llara_rag.training import AdaptationArguments
    from llara_rag.training.losses.llara import _gather, additive_mask
    from llara_rag.training.trainer import lora_model

    tuned = load_backbone(str(tiny_backbone_dir))
    model = lora_model(tuned, AdaptationArguments(output_dir=str(tmp_path), model=str(tiny_backbone_dir)))
    builder = ExampleBuilder(tuned.tokenizer, tuned.special_ids, max_text_tokens=64, remove_stopwords=False)
    batch = collate_examples([builder(r) for r in RECORDS], pad_id=tuned.tokenizer.pad_token_id)
    torch.manual_seed(0)
    for parameter in model.parameters():
        if parameter.requires_grad:  # away from peft's zero init, so every path carries a gradient
            parameter.data.add_(0.05 * torch.randn_like(parameter))

    def gradients(loss: torch.Tensor) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    config = ObjectiveConfig(remove_stopwords=False)
    fast = compute_objective(model, batch, config)
    full = model(
        input_ids=batch["input_ids"],
        attention_mask=additive_mask(batch["allowed"], torch.float32),
        position_ids=batch["position_ids"],
    ).logits
    lm = F.cross_entropy(full.flatten(0, 1), batch["lm_labels"].flatten(), ignore_index=IGNORE)
    ebae = bag_of_words_loss(_gather(full, batch["summarize_index"]), batch["ebae_targets"])
    ebar = bag_of_words_loss(_gather(full, batch["predict_index"]), batch["ebar_targets"])
    reference = lm + (ebae + ebar) / 2
    assert fast.loss.item() == pytest.approx(reference.item(), rel=1e-5)
    fast_grads, reference_grads = gradients(fast.loss), gradients(reference)
    assert fast_grads.keys() == reference_grads.keys()
    assert any("trainable_tokens" in name for name in fast_grads), "the special-token rows are trained"
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
