"""Retrieval scores logged while training: the evaluator sees the weights being trained, as they are served."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llara_rag.cli import main
from llara_rag.encoding.encoder import LLaRAEncoder
from llara_rag.evaluation import RetrievalEvaluator
from llara_rag.testing import PAIRS
from llara_rag.training import ContrastiveArguments, finetune
from llara_rag.training.trainer import TrainingEncoder


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PAIRS))
    return path


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pairs as a BEIR folder: each query judges its positive relevant."""
    folder = tmp_path_factory.mktemp("beir")
    docs = [text for row in PAIRS for text in (*row["pos"], *row["neg"])]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(docs))
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": row["query"]}) + "\n" for i, row in enumerate(PAIRS))
    )
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{2 * i}\t1\n" for i in range(len(PAIRS)))
    )
    return folder


class Recorder(RetrievalEvaluator):
    """The real evaluator, remembering the step and the query vectors of each call."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, np.ndarray]] = []

    def __call__(self, encoder: TrainingEncoder) -> dict[str, float]:
        self.calls.append((encoder.fingerprint, encoder.encode_queries(["why do cats purr", "what is rust"])))
        return super().__call__(encoder)


def test_scores_are_logged_every_n_steps_from_the_weights_being_trained(
    tiny_backbone_dir: Path, pairs_file: Path, beir: Path, tmp_path: Path
) -> None:
    evaluator = Recorder(beir, every=2)
    args = ContrastiveArguments(
        output_dir=str(tmp_path / "checkpoints"),
        model=str(tiny_backbone_dir),
        max_steps=3,
        per_device_train_batch_size=2,
        negatives=1,
        miner="none",
        learning_rate=5e-2,
        logging_steps=1,
        save_steps=10,
        disable_tqdm=True,
    )
    result = finetune(pairs_file, tmp_path / "adapter", args, evaluator=evaluator)
    assert [fingerprint for fingerprint, _ in evaluator.calls] == ["training-step-2", "training-step-3"]
    trained = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(result.adapter))
    served = trained.encode_queries(["why do cats purr", "what is rust"])
    np.testing.assert_allclose(
        evaluator.calls[-1][1], served, atol=1e-4
    )  # the last step's weights, as served
    assert not np.allclose(evaluator.calls[0][1], served, atol=1e-4)  # step 2's weights differ
    history = json.loads(
        (tmp_path / "checkpoints").joinpath("..", "adapter", "llara_config.json").read_text()
    )
    assert history["training"]["steps"] == 3
    scores = evaluator(TrainingEncoder(trained.backbone.network, trained.backbone, step=3))
    assert {"nDCG@10", "Recall@100"} <= set(scores) and 0 < scores["nDCG@10"] <= 1


def test_max_queries_keeps_the_first_queries_and_their_judgments(beir: Path) -> None:
    evaluator = RetrievalEvaluator(beir, every=1, max_queries=2)
    assert list(evaluator.collection.queries) == ["q0", "q1"] and set(evaluator.collection.qrels) == {
        "q0",
        "q1",
    }
    assert len(evaluator.collection.doc_ids) == 2 * len(PAIRS)


def test_a_wrong_eval_folder_is_refused_before_training(
    tiny_backbone_dir: Path, pairs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["finetune", str(pairs_file), "--output", str(tmp_path / "out"), "--base", str(tiny_backbone_dir)]
    assert main([*argv, "--miner", "none", "--eval-data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "out.checkpoints").exists()
