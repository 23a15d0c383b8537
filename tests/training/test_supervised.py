"""The contrastive stage: InfoNCE, the group layout, hard-negative mining, cross-device negatives, adapters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llara_rag.cli import main
from llara_rag.encoding.adapter import TrainedLengths, adapter_digest, read_adapter_info
from llara_rag.encoding.encoder import LLaRAEncoder
from llara_rag.errors import AdapterError, InvalidInputError
from llara_rag.ranking.beir import Collection
from llara_rag.ranking.systems import RetrievalSystem
from llara_rag.retrieval.fusion import Run
from llara_rag.testing import PAIRS, build_tiny_backbone
from llara_rag.training import AdaptationArguments, adapt
from llara_rag.training.contrastive import ContrastiveArguments
from llara_rag.training.data.groups import GroupCollator, draw_samples
from llara_rag.training.data.pairs import (
    MiningConfig,
    PairsSummary,
    TrainingGroup,
    load_groups,
    mine_negatives,
    read_jsonl_groups,
)
from llara_rag.training.losses.info_nce import ACCURACY_METRIC, embed, info_nce
from llara_rag.training.supervised import finetune
from llara_rag.training.trainer import COSINE_METRIC


def test_info_nce_matches_a_hand_computed_case():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # group 0: positive [1, 0], negative [0.8, 0.6]; group 1: positive [0, 1], negative [0.6, 0.8]
    passages = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    loss, accuracy = info_nce(queries, passages, group_size=2, temperature=0.5)
    # scores / 0.5: query 0 -> [2, 1.6, 0, 1.2] (target 0); query 1 -> [0, 1.2, 2, 1.6] (target 2)
    loss_0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1.6) + 1 + math.exp(1.2)))
    loss_1 = -math.log(math.exp(2) / (1 + math.exp(1.2) + math.exp(2) + math.exp(1.6)))
    assert loss.item() == pytest.approx((loss_0 + loss_1) / 2, rel=1e-6)
    assert accuracy.item() == 1.0
    sharper, _ = info_nce(queries, passages, group_size=2, temperature=0.01)
    assert sharper.item() < loss.item(), "a lower temperature sharpens a correctly ranked batch"


def test_groups_are_laid_out_queries_first_then_positive_and_negatives(tiny_backbone_dir):
    encoder = LLaRAEncoder(model=str(tiny_backbone_dir))
    groups = [TrainingGroup(p["query"], tuple(p["pos"]), tuple(p["neg"]) * 3) for p in PAIRS[:2]]
    samples = draw_samples(groups, negatives=2, seed=0)
    assert [s.passages[0] for s in samples] == [g.positives[0] for g in groups]
    assert all(
        len(s.passages) == 3 and set(s.passages[1:]) <= set(g.negatives) for s, g in zip(samples, groups)
    )
    short = draw_samples([TrainingGroup("q", ("p",), ("n",))], negatives=3, seed=0)[0]
    assert short.passages == ("p", "n", "n", "n"), "too few negatives are repeated to keep groups equal"

    batch = GroupCollator(encoder.inputs, 64, 64)(samples)

    def rows(side: str) -> list[list[int]]:
        pairs = zip(batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"])
        return [ids[mask.bool()].tolist() for ids, mask in pairs]

    assert rows("query") == encoder.build_inputs([s.query for s in samples], "query")
    assert rows("passage") == encoder.build_inputs([text for s in samples for text in s.passages], "passage")
    assert batch["query_input_ids"].shape[1] < batch["passage_input_ids"].shape[1], (
        "queries keep their length"
    )
    assert batch["query_keys"].tolist() == batch["passage_keys"][::3].tolist(), (
        "a query shares its positive's key"
    )

    def side(name: str) -> dict[str, torch.Tensor]:
        return {k: batch[f"{name}_{k}"] for k in ("input_ids", "attention_mask", "position_ids")}

    with torch.no_grad():
        trained = embed(encoder.backbone.network, side("passage")).numpy()
    served = encoder.encode_passages([text for s in samples for text in s.passages])
    np.testing.assert_allclose(
        trained, served, atol=1e-5, err_msg="training must embed what the encoder serves"
    )


def _collection(doc_count: int, positives: dict[str, list[str]]) -> Collection:
    doc_ids = tuple(f"d{i}" for i in range(doc_count))
    return Collection(
        name="toy",
        split="train",
        doc_ids=doc_ids,
        doc_texts=tuple(f"text {d}" for d in doc_ids),
        queries={q: f"query {q}" for q in positives},
        qrels={q: {d: 1 for d in docs} for q, docs in positives.items()},
    )


def test_mining_skips_positives_and_top_ranks():
    collection = _collection(20, {"q": ["d1", "d5"]})
    run: Run = {"q": {f"d{i}": 10.0 - i for i in range(10)}}  # d0 ranks first ... d9 tenth
    config = MiningConfig(negatives=3, skip_top=2, depth=6)
    assert sorted(mine_negatives(collection, run, config)["q"]) == ["d2", "d3", "d4"]
    filled = mine_negatives(collection, run, config.model_copy(update={"negatives": 8}))["q"]
    assert len(set(filled)) == 8 and not {"d0", "d1", "d5"} & set(filled), "random fill still skips them"
    assert mine_negatives(collection, run, config) == mine_negatives(collection, run, config), "seeded"


class RecordingSystem(RetrievalSystem):
    """Ranks every document for every query, and records which queries it was asked to rank."""

    def __init__(self) -> None:
        super().__init__("recording", "recording")
        self.seen: list[str] = []

    def _retrieve(self, collection: Collection, depth: int) -> Run:
        self.seen.extend(collection.queries)
        return {q: {d: -float(i) for i, d in enumerate(collection.doc_ids)} for q in collection.queries}

    def describe(self) -> dict[str, object]:
        return {}


def _write_beir(folder: Path) -> Path:
    docs = {f"d{i}": f"document {i} about cats purr and dogs bark" for i in range(12)}
    queries = {"train-1": "cats purr", "train-2": "dogs bark", "test-1": "wing lift"}
    folder.joinpath("qrels").mkdir(parents=True)
    folder.joinpath("corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items())
    )
    folder.joinpath("queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items())
    )
    folder.joinpath("qrels/train.tsv").write_text(
        "query-id\tcorpus-id\tscore\ntrain-1\td0\t1\ntrain-2\td1\t1\n"
    )
    folder.joinpath("qrels/test.tsv").write_text("query-id\tcorpus-id\tscore\ntest-1\td2\t1\n")
    return folder


def test_beir_mining_reads_only_the_given_split(tmp_path, monkeypatch):
    folder = _write_beir(tmp_path / "toy")
    recorder = RecordingSystem()
    monkeypatch.setattr("llara_rag.training.data.pairs.ranker", lambda config: recorder)
    groups, summary = load_groups(folder, "train", MiningConfig(negatives=3, skip_top=1))
    assert sorted(recorder.seen) == ["train-1", "train-2"], "a test query must never be ranked for mining"
    assert sorted(g.query for g in groups) == ["cats purr", "dogs bark"]
    for group in groups:
        assert len(group.negatives) == 3 and not set(group.negatives) & set(group.positives)
    assert summary.split == "train" and summary.mined_negatives == 6
    with pytest.raises(InvalidInputError, match="--negatives 0"):
        load_groups(folder, "train", MiningConfig(miner="none"))


def test_bad_jsonl_lines_are_skipped_with_reasons(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"query": "ok", "pos": ["p"]}\nnot json\n{"query": "", "pos": ["p"]}\n'
        '{"query": "q", "pos": []}\n{"query": "q", "pos": ["p"], "neg": "n"}\n'
    )
    summary = PairsSummary(source=str(path), split=None, miner="none")
    assert [g.query for g in read_jsonl_groups(path, summary)] == ["ok"]
    assert sum(summary.skipped.values()) == 4 and len(summary.skipped) == 4
    path.write_text("not json\n")
    with pytest.raises(InvalidInputError, match="No usable training group"):
        load_groups(path, "train", MiningConfig())
    assert main(["finetune", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "out")]) == 2


def _args(model: Path, checkpoints: Path, **overrides: object) -> ContrastiveArguments:
    fields = {
        "output_dir": str(checkpoints),
        "model": str(model),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "negatives": 1,
        "miner": "none",
        "learning_rate": 5e-2,
        "logging_steps": 1,
        "save_steps": 10,
        "disable_tqdm": True,
    }
    return ContrastiveArguments(**{**fields, **overrides})


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PAIRS))
    return path


def test_short_run_writes_an_adapter_that_loads_and_changes_embeddings(
    tiny_backbone_dir, pairs_file, tmp_path
):
    result = finetune(pairs_file, tmp_path / "adapter", _args(tiny_backbone_dir, tmp_path / "checkpoints"))
    info = read_adapter_info(result.adapter)
    assert info is not None and info.stage == "contrastive"
    assert info.trained_lengths == TrainedLengths(query=64, passage=160)
    assert info.training["steps"] == 2 and info.training["data"]["groups"] == len(PAIRS)
    assert {ACCURACY_METRIC, COSINE_METRIC} <= set(info.training["last_log"])
    objective = info.training["objective"]
    assert (objective["loss"], objective["group_size"], objective["temperature"]) == ("InfoNCE", 2, 0.01)
    assert info.training["continued_from"] is None
    base = LLaRAEncoder(model=str(tiny_backbone_dir))
    tuned = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(result.adapter))
    texts = ["cats purr", "what is rust"]
    assert np.abs(base.encode_queries(texts) - tuned.encode_queries(texts)).max() > 1e-3


def test_continues_training_an_adaptation_adapter(tiny_backbone_dir, pairs_file, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"text": row["pos"][0] + " . " + row["neg"][0]}) + "\n" for row in PAIRS)
    )
    adapted = adapt(
        docs,
        tmp_path / "adapted",
        AdaptationArguments(
            output_dir=str(tmp_path / "adapt-checkpoints"),
            model=str(tiny_backbone_dir),
            max_steps=1,
            lora_r=4,
            lora_alpha=8,
            per_device_train_batch_size=2,
            window_tokens=8,
            disable_tqdm=True,
            remove_stopwords=False,
        ),
    ).adapter
    before = adapter_digest(adapted)
    result = finetune(
        pairs_file,
        tmp_path / "tuned",
        _args(tiny_backbone_dir, tmp_path / "checkpoints", start_adapter=str(adapted), lora_r=16),
    )
    assert adapter_digest(adapted) == before, "the starting adapter is read, never rewritten"
    info = read_adapter_info(result.adapter)
    assert info is not None and info.stage == "contrastive"
    assert info.training["continued_from"] == {"path": str(adapted), "digest": before, "stage": "adaptation"}
    assert json.loads((result.adapter / "adapter_config.json").read_text())["r"] == 4, (
        "the adapter's own LoRA"
    )
    assert info.training["hyperparameters"]["lora_r"] == 4

    texts = ["cats purr", "wing lift"]
    base = LLaRAEncoder(model=str(tiny_backbone_dir)).encode_passages(texts)
    stage_one = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(adapted)).encode_passages(texts)
    stage_two = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(result.adapter)).encode_passages(texts)
    assert np.abs(stage_two - stage_one).max() > 1e-3 and np.abs(stage_two - base).max() > 1e-3

    other = build_tiny_backbone(tmp_path / "other", hidden_size=48)
    with pytest.raises(AdapterError, match="was trained on"):
        finetune(pairs_file, tmp_path / "refused", _args(other, tmp_path / "c2", start_adapter=str(adapted)))


def _gather_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    passages = torch.nn.functional.normalize(torch.randn(12, 8, generator=generator), dim=-1).requires_grad_()
    local_q, local_p = (
        queries[2 * rank : 2 * rank + 2],
        passages[6 * rank : 6 * rank + 6].detach().requires_grad_(),
    )
    loss, _ = info_nce(local_q, local_p, group_size=3, temperature=0.05)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad": local_p.grad}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_cross_device_negatives_gather_passages_with_gradients(tmp_path):
    torch.multiprocessing.spawn(_gather_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    passages = torch.nn.functional.normalize(torch.randn(12, 8, generator=generator), dim=-1).requires_grad_()
    scores = queries @ passages.T / 0.05
    per_query = torch.nn.functional.cross_entropy(scores, torch.arange(4) * 3, reduction="none")
    (per_query[:2].mean() + per_query[2:].mean()).backward()  # what the two ranks' losses add up to
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["loss"].item() == pytest.approx(
            per_query[2 * rank : 2 * rank + 2].mean().item(), rel=1e-5
        )
        torch.testing.assert_close(
            result["grad"], passages.grad[6 * rank : 6 * rank + 6], rtol=1e-4, atol=1e-6
        )
