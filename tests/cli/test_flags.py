"""Options generated from the settings' fields: each flag's default and help are the field's own."""

from __future__ import annotations

import argparse

import pytest

from llara_rag.cli.flags import add_options, option_values, options_of
from llara_rag.indexing.ingest import IngestConfig
from llara_rag.retrieval.retriever import RetrievalConfig


def _parse(settings: type, argv: list[str], **defaults: object) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    options = options_of(settings)
    add_options(parser, options, **defaults)
    return option_values(parser.parse_args(argv), options)


def test_no_flag_gives_the_library_defaults() -> None:
    assert IngestConfig(**_parse(IngestConfig, [])) == IngestConfig()
    assert RetrievalConfig(**_parse(RetrievalConfig, [])) == RetrievalConfig()


def test_flags_set_their_fields_in_the_fields_units() -> None:
    values = _parse(IngestConfig, ["--chunk-size", "128", "--max-file-mb", "0.5", "--rechunk"])
    assert (values["chunk_size"], values["max_file_bytes"], values["rechunk"]) == (128, 500_000, True)


def test_choices_come_from_a_literal_and_a_command_may_change_a_default() -> None:
    assert _parse(RetrievalConfig, [], top_k=3)["top_k"] == 3
    with pytest.raises(SystemExit):
        _parse(RetrievalConfig, ["--mode", "sparse"])


def test_training_flags_follow_the_dataclass_and_its_subclasses() -> None:
    pytest.importorskip("transformers")
    from llara_rag.training import AdaptationArguments, ContrastiveArguments

    adapt = _parse(AdaptationArguments, ["--keep-stopwords", "--report-to", "tensorboard,wandb"])
    assert adapt["learning_rate"] == 2e-4 and adapt["remove_stopwords"] is False
    finetune = _parse(ContrastiveArguments, ["--no-cross-device"])
    assert finetune["learning_rate"] == 1e-4, "a subclass's default keeps the flag its base declares"
    assert finetune["cross_device_negatives"] is False and finetune["per_device_train_batch_size"] == 64
    arguments = AdaptationArguments(output_dir="unused", **{**adapt, "report_to": "tensorboard,wandb"})
    assert arguments.report_to == ["tensorboard", "wandb"]
