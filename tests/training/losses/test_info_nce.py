"""The gradient cache: chunked InfoNCE gives the gradients of the whole batch at once, dropout included."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llara_rag.encoding.backbone import load_backbone
from llara_rag.encoding.encoder import PromptInputs
from llara_rag.training.data.groups import GroupCollator, GroupSample
from llara_rag.training.losses.base import LossOutput
from llara_rag.training.losses.info_nce import CachedInfoNCE, InfoNCEConfig, chunks, embed, info_nce

TEXTS = [
    ("cats purr", "cats purr when happy and dogs bark"),
    ("what is rust", "rust is a systems programming language"),
    ("wing lift", "wing lift air pressure flow"),
    ("insulin", "diabetes insulin"),
    ("stock market", "the stock market fell on monday"),
]


def _lora(model_dir, dropout: float):
    from peft import LoraConfig, get_peft_model

    backbone = load_backbone(str(model_dir), device="cpu")
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", init_lora_weights=False
    )
    model = get_peft_model(backbone.network, config)
    model.train()
    return backbone, model


def _grads(model, loss_fn, batch, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    output = loss_fn(model, batch)
    (output.loss * 0.5).backward()  # the Trainer scales losses (gradient accumulation): the cache must follow
    return output.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _chunked_with_graph(max_tokens: int):
    """The reference: the same chunks in the same order (so the same dropout masks), all kept in one graph."""

    def loss_fn(model, batch):
        embedded = {}
        for side in ("query", "passage"):
            inputs = {k: batch[f"{side}_{k}"] for k in ("input_ids", "attention_mask", "position_ids")}
            parts = [(rows, embed(model, part)) for rows, part in chunks(inputs, max_tokens)]
            rows = torch.cat([rows for rows, _ in parts])
            vectors = torch.cat([vectors for _, vectors in parts])
            embedded[side] = vectors.new_zeros(vectors.shape).index_copy(0, rows, vectors)
        loss, accuracy = info_nce(
            embedded["query"],
            embedded["passage"],
            1,
            0.05,
            query_keys=batch["query_keys"],
            passage_keys=batch["passage_keys"],
        )
        return LossOutput(loss, {"accuracy": accuracy}, embedded["passage"].detach())

    return loss_fn


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_chunked_gradients_equal_one_graph_gradients(tiny_backbone_dir, dropout):
    backbone, model = _lora(tiny_backbone_dir, dropout)
    samples = [GroupSample(q, (p,), (i,)) for i, (q, p) in enumerate(TEXTS)]
    batch = GroupCollator(PromptInputs(backbone.tokenizer, backbone.special_ids), 16, 32)(samples)
    reference = _chunked_with_graph(24) if dropout else CachedInfoNCE(InfoNCEConfig(chunk_tokens=0), 1)
    whole_loss, whole = _grads(model, reference, batch, seed=1)
    chunk_loss, chunked = _grads(model, CachedInfoNCE(InfoNCEConfig(chunk_tokens=24), 1), batch, seed=1)
    assert chunk_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == chunked.keys() and whole
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_chunks_are_cut_to_their_longest_row():
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    batch = {"input_ids": torch.arange(20).reshape(4, 5), "attention_mask": mask}
    parts = chunks(batch, 6)
    assert [rows.tolist() for rows, _ in parts] == [[1], [3, 0], [2]], "longest rows first, 6 tokens a chunk"
    assert [inputs["input_ids"].shape[1] for _, inputs in parts] == [5, 3, 1]
    assert chunks(batch, 2)[0][0].tolist() == [1], "a row longer than the budget is a chunk"


def test_a_long_row_is_not_padded_with_short_ones():
    """Cutting only full chunks would pad 9 short rows to the long one's 200 tokens: 1,620 wasted positions."""
    lengths = torch.tensor([20] * 15 + [200] + [20] * 15)
    mask = (torch.arange(200) < lengths[:, None]).long()
    parts = chunks({"input_ids": mask.clone(), "attention_mask": mask}, 2048)
    assert [rows.tolist() for rows, _ in parts] == [[15], [i for i in range(31) if i != 15]]
    assert [tuple(inputs["input_ids"].shape) for _, inputs in parts] == [(1, 200), (30, 20)]


def test_passages_of_the_query_document_are_not_its_negatives():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    passages = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    same_document = torch.tensor([7, 7])
    masked, accuracy = info_nce(
        queries, passages, 1, 0.1, query_keys=same_document, passage_keys=same_document
    )
    assert masked.item() == pytest.approx(0.0, abs=1e-6), "the only other passage is masked out"
    unmasked, _ = info_nce(queries, passages, 1, 0.1)
    assert unmasked.item() > 1e-5 and accuracy.item() == 1.0


def test_a_teacher_orders_each_querys_own_negatives():
    """InfoNCE over every passage plus the KL divergence from the teacher's softmax over a query's own
    negatives (passages 1-2 for query 0, 4-5 for query 1) to the query's, exactly as computed by hand."""
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    passages = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0], [0.8, -0.6], [0.6, 0.8]])
    teacher = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    loss, accuracy = info_nce(queries, passages, 3, 0.5, teacher_scores=teacher, teacher_temperature=2.0)
    plain, _ = info_nce(queries, passages, 3, 0.5)
    scores = queries @ passages.T / 0.5
    targets = torch.softmax(teacher / 2.0, dim=1)
    student = torch.log_softmax(scores[[[0], [1]], [[1, 2], [4, 5]]], dim=1)
    distillation = (targets * (targets.log() - student)).sum() / 2
    assert loss.item() == pytest.approx(plain.item() + distillation.item(), rel=1e-5)
    assert distillation.item() > 0.05 and accuracy.item() == 1.0
    agreeing = student * 0.5  # over its temperature of 0.5, the teacher's softmax is the student's
    same, _ = info_nce(queries, passages, 3, 0.5, teacher_scores=agreeing, teacher_temperature=0.5)
    assert same.item() == pytest.approx(plain.item(), abs=1e-5), "a teacher that agrees adds nothing"
