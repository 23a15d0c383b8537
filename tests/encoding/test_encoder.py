"""LLaRAEncoder on a tiny random Llama: prompts, truncation, pooling under any padding, errors, adapters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llara_rag.encoding.encoder import EncoderConfig, LLaRAEncoder, collate, get_encoder, pool_special
from llara_rag.encoding.prompts import PREDICT_TOKENS, SUMMARIZE_TOKENS
from llara_rag.errors import AdapterError, InvalidInputError
from llara_rag.testing import build_tiny_backbone, write_random_adapter

TEXTS = [
    "cats purr",
    (
        "the wing lift is a pressure flow of air above and below the wing , and the air pressure "
        "below the wing is higher than the air pressure above the wing , which is how a wing can lift"
    ),
    "dogs bark when happy",
    "dense retrieval with an embedding model and a vector store index for search",
]


@pytest.fixture(scope="module")
def encoder(tiny_backbone_dir: Path) -> LLaRAEncoder:
    return LLaRAEncoder(model=str(tiny_backbone_dir), batch_size=4)


def tokens(encoder: LLaRAEncoder, ids: list[int]) -> list[str]:
    return encoder.backbone.tokenizer.convert_ids_to_tokens(ids)


def test_passage_prompt_is_bos_quote_text_summarize_suffix(encoder: LLaRAEncoder) -> None:
    (ids,) = encoder.build_inputs(["cats purr"], "passage")
    expected = ["<s>", '"', "cats", "purr", '"', ",", "summarize", "the", "above", "passage", "within"]
    assert tokens(encoder, ids) == [*expected, "eight", "words", ":", *SUMMARIZE_TOKENS]


def test_query_prompt_ends_with_predict_tokens(encoder: LLaRAEncoder) -> None:
    (ids,) = encoder.build_inputs(["how do cats purr ?"], "query")
    expected = ["<s>", '"', "how", "do", "cats", "purr", "?", '"', ",", "predict", "the", "following"]
    assert tokens(encoder, ids) == [*expected, "passage", "within", "eight", "words", ":", *PREDICT_TOKENS]


def test_only_the_text_is_truncated_per_side(tiny_backbone_dir: Path) -> None:
    encoder = LLaRAEncoder(model=str(tiny_backbone_dir), query_max_length=3, passage_max_length=5)
    long_text = " ".join(["cats"] * 50)
    for side, kept, suffix in (("query", 3, PREDICT_TOKENS), ("passage", 5, SUMMARIZE_TOKENS)):
        (ids,) = encoder.build_inputs([long_text], side)
        (short,) = encoder.build_inputs(["cats"], side)
        assert len(ids) == len(short) + kept - 1
        assert tokens(encoder, ids)[2 : 2 + kept] == ["cats"] * kept
        assert tokens(encoder, ids)[-8:] == list(suffix)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batched_embeddings_equal_single_unpadded(encoder: LLaRAEncoder, padding_side: str) -> None:
    encoder.padding_side = padding_side
    try:
        batched = encoder.encode_passages(TEXTS, batch_size=4)
        single = np.stack([encoder.encode_passages([text], batch_size=1)[0] for text in TEXTS])
    finally:
        encoder.padding_side = "right"
    lengths = {len(ids) for ids in encoder.build_inputs(TEXTS, "passage")}
    assert len(lengths) == len(TEXTS), "the texts must need padding for this test to mean anything"
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_output_is_float32_unit_norm_in_input_order(encoder: LLaRAEncoder) -> None:
    vectors = encoder.encode_queries(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reversed_vectors = encoder.encode_queries(TEXTS[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)


def test_query_and_passage_sides_differ(encoder: LLaRAEncoder) -> None:
    assert not np.allclose(encoder.encode_queries(TEXTS[:1]), encoder.encode_passages(TEXTS[:1]))


def test_pool_special_reads_the_last_eight_real_positions() -> None:
    hidden = torch.arange(2 * 12, dtype=torch.float32).reshape(2, 12, 1)
    right = torch.tensor([[1] * 10 + [0] * 2, [1] * 12])
    left = torch.tensor([[0] * 2 + [1] * 10, [1] * 12])
    assert pool_special(hidden, right)[:, 0].tolist() == [5.5, 19.5]
    assert pool_special(hidden, left)[:, 0].tolist() == [7.5, 19.5]


def test_collate_positions_ignore_left_padding() -> None:
    batch = collate([[5, 6, 7], [8]], pad_id=0, padding_side="left")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["position_ids"][1, -1].item() == 0


@pytest.mark.parametrize("bad", [[""], ["   \n"], ["cats", None], "cats purr"])
def test_bad_texts_get_a_clear_error(encoder: LLaRAEncoder, bad: object) -> None:
    with pytest.raises(InvalidInputError, match="Text 1|Text 0|single string"):
        encoder.encode_passages(bad)  # type: ignore[arg-type]


def test_empty_list_gives_empty_array(encoder: LLaRAEncoder) -> None:
    assert encoder.encode_queries([]).shape == (0, encoder.dimension)


def test_adapter_changes_vectors_and_fingerprint(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    adapter = write_random_adapter(tiny_backbone_dir, tmp_path / "adapter")
    base = LLaRAEncoder(model=str(tiny_backbone_dir))
    adapted = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(adapter))
    assert adapted.fingerprint != base.fingerprint
    assert not np.allclose(adapted.encode_passages(TEXTS), base.encode_passages(TEXTS), atol=1e-4)
    assert LLaRAEncoder(model=str(tiny_backbone_dir)).fingerprint == base.fingerprint


def test_adapter_for_another_backbone_is_refused(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_backbone(tmp_path / "other", hidden_size=48)
    adapter = write_random_adapter(tiny_backbone_dir, tmp_path / "adapter")
    with pytest.raises(AdapterError, match="was trained on"):
        LLaRAEncoder(model=str(other), adapter=str(adapter))
    with pytest.raises(AdapterError, match="missing adapter_config.json"):
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(tmp_path))


def test_shared_encoder_is_loaded_once_per_config(tiny_backbone_dir: Path) -> None:
    config = EncoderConfig(model=str(tiny_backbone_dir))
    assert get_encoder(config) is get_encoder(EncoderConfig(model=str(tiny_backbone_dir)))
    other_lengths = get_encoder(config.model_copy(update={"query_max_length": 7, "batch_size": 3}))
    assert other_lengths is not get_encoder(config)
    assert other_lengths.backbone is get_encoder(config).backbone


def test_get_encoder_serves_an_adapter_written_again_into_the_same_folder(
    tiny_backbone_dir: Path, tmp_path: Path
) -> None:
    import shutil

    folder = write_random_adapter(tiny_backbone_dir, tmp_path / "adapter", seed=1)
    config = EncoderConfig(model=str(tiny_backbone_dir), adapter=str(folder))
    first = get_encoder(config)
    assert get_encoder(config) is first
    shutil.rmtree(folder)
    write_random_adapter(tiny_backbone_dir, folder, seed=2)
    again = get_encoder(config)
    assert again.fingerprint != first.fingerprint
    assert np.abs(again.encode_queries(["cats purr"]) - first.encode_queries(["cats purr"])).max() > 1e-4


def test_serving_an_adapter_with_other_prompts_than_it_was_trained_with_warns(
    tiny_backbone_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from llara_rag.encoding.prompts import LLaRAPrompts

    adapter = str(write_random_adapter(tiny_backbone_dir, tmp_path / "adapter"))
    with caplog.at_level("WARNING", logger="llara_rag.encoding.encoder"):
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=adapter)
        assert not caplog.records
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=adapter, prompts=LLaRAPrompts(prefix="<<"))
    assert "was trained with the prompts" in caplog.text and "'prefix': '<<'" in caplog.text


def test_serving_an_adapter_at_other_lengths_than_it_was_trained_with_says_so(
    tiny_backbone_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from llara_rag.encoding.adapter import TrainedLengths, read_adapter_info, write_adapter_info

    adapter = write_random_adapter(tiny_backbone_dir, tmp_path / "adapter")
    info = read_adapter_info(adapter)
    assert info is not None
    write_adapter_info(
        adapter, info.model_copy(update={"trained_lengths": TrainedLengths(query=64, passage=160)})
    )
    with caplog.at_level("INFO", logger="llara_rag.encoding.encoder"):
        LLaRAEncoder(
            model=str(tiny_backbone_dir), adapter=str(adapter), query_max_length=64, passage_max_length=160
        )
        assert "trained on queries" not in caplog.text
        LLaRAEncoder(model=str(tiny_backbone_dir), adapter=str(adapter))
    assert "trained on queries of up to 64 tokens and passages of up to 160" in caplog.text
    assert "served with query_max_length=128 and passage_max_length=512" in caplog.text


def test_lowercase_encodes_any_case_as_lower_case_on_both_sides(tiny_backbone_dir: Path) -> None:
    folded = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=None, lowercase=True)
    cased = LLaRAEncoder(model=str(tiny_backbone_dir), adapter=None, lowercase=False)
    for side in ("query", "passage"):
        np.testing.assert_array_equal(
            folded.encode(["CATS Purr"], side), folded.encode(["cats purr"], side)  # type: ignore[arg-type]
        )
        assert folded.build_inputs(["CATS Purr"], side) != cased.build_inputs(["CATS Purr"], side)  # type: ignore[arg-type]
    assert folded.fingerprint != cased.fingerprint


def test_lowercase_follows_the_adapter_unless_set(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    import json

    adapter = write_random_adapter(tiny_backbone_dir, tmp_path / "adapter")
    assert EncoderConfig(model=str(tiny_backbone_dir), adapter=str(adapter)).lowercase is False
    config = adapter / "llara_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "lowercase": True}))
    assert EncoderConfig(model=str(tiny_backbone_dir), adapter=str(adapter)).lowercase is True
    assert EncoderConfig(model=str(tiny_backbone_dir), adapter=str(adapter), lowercase=False).lowercase is False
    assert EncoderConfig(model=str(tiny_backbone_dir), adapter=str(tmp_path / "missing")).lowercase is False
