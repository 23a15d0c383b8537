"""What a contrastive row holds, collated."""

from __future__ import annotations

from llara_rag.encoding.backbone import load_backbone
from llara_rag.encoding.encoder import PromptInputs
from llara_rag.training.data.groups import GroupCollator, GroupSample


def test_the_collator_carries_a_teachers_scores_only_when_the_samples_do(tiny_backbone_dir):
    backbone = load_backbone(str(tiny_backbone_dir), device="cpu")
    collate = GroupCollator(PromptInputs(backbone.tokenizer, backbone.special_ids), 16, 16)
    scored = [
        GroupSample("cats purr", ("cats purr loudly", "dogs bark", "wings lift"), (1, 2, 3), (0.5, -1.0)),
        GroupSample("dogs bark", ("dogs bark at night", "cats purr", "wings lift"), (2, 1, 3), (2.0, 1.5)),
    ]
    batch = collate(scored)
    assert batch["teacher_scores"].tolist() == [[0.5, -1.0], [2.0, 1.5]]
    assert batch["passage_input_ids"].shape[0] == 6
    plain = [GroupSample(sample.query, sample.passages, sample.keys) for sample in scored]
    assert "teacher_scores" not in collate(plain)
