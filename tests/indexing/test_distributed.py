"""Indexing on a local Ray cluster started here: two CPU workers write the chunks one process would, once each,
with the same vectors, into the pinned server collection; a dead worker fails the run and a re-run completes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llara_rag.encoding.pool import EncoderWorkerError
from llara_rag.errors import InvalidInputError, ModelMismatchError
from llara_rag.indexing.ingest import IngestConfig, docstore_path, index_folder, ingest_folder
from llara_rag.indexing.lexical import lexical_folder
from llara_rag.indexing.store import ModelIdentity, StoreConfig, open_store
from llara_rag.testing import write_corpus

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

from llara_rag.indexing.distributed import RayConfig, RayWriter, index_with_ray

CHUNKING = IngestConfig(chunk_size=64, chunk_overlap=8, chunks_per_batch=8)


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def embed_model(tiny_backbone_dir: Path):
    from llara_rag.encoding.embedding import LLaRAEmbedding

    return LLaRAEmbedding(model_name=str(tiny_backbone_dir))


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("ray-docs"), n_files=8, seed=3)


def records(config: StoreConfig, embed_model) -> dict[str, np.ndarray]:
    collection = open_store(config, embed_model, create=False).collection
    stored = collection.get(include=["embeddings"])
    assert len(stored["ids"]) == len(set(stored["ids"])) == collection.count()
    return dict(zip(stored["ids"], np.asarray(stored["embeddings"])))


def server(url: str, name: str, tmp_path: Path) -> StoreConfig:
    return StoreConfig.from_url(url, collection=name, docstore_dir=tmp_path / "record")


def test_two_workers_write_what_one_process_writes(
    local_cluster: None, chroma_server_url: str, tmp_path: Path, embed_model, docs: Path
) -> None:
    single = StoreConfig(path=tmp_path / "db", collection="single")
    expected = index_folder(docs, single, embed_model, CHUNKING)
    config = server(chroma_server_url, "ray-notes", tmp_path)

    summary = index_with_ray(docs, config, embed_model, CHUNKING, RayConfig(workers=2))

    assert summary.chunks_written == expected.chunks_written > 8  # more than one batch per worker
    assert sorted(summary.added) == sorted(expected.added)
    written, reference = records(config, embed_model), records(single, embed_model)
    assert written.keys() == reference.keys()
    for chunk, vector in reference.items():
        np.testing.assert_allclose(written[chunk], vector, atol=1e-6)
    pin = ModelIdentity.from_metadata(open_store(config, embed_model, create=False).collection.metadata)
    assert pin == ModelIdentity.of(embed_model)
    again = index_with_ray(docs, config, embed_model, CHUNKING, RayConfig(workers=2))
    assert len(again.unchanged) == len(expected.added) and again.chunks_written == 0


def test_a_dead_worker_fails_the_run_and_a_rerun_finishes_without_duplicates(
    local_cluster: None, chroma_server_url: str, tmp_path: Path, embed_model, docs: Path
) -> None:
    config = server(chroma_server_url, "ray-killed", tmp_path)
    store = open_store(config, embed_model)
    writer = RayWriter(RayConfig(workers=2), embed_model.encoder_config, config, store.identity, 8)
    ray.kill(writer.start()[1])
    with pytest.raises(EncoderWorkerError, match="run the same command again"):
        ingest_folder(
            docs,
            store,
            embed_model,
            docstore_path(config, store),
            lexical_folder(config, store.collection),
            CHUNKING,
            writer=writer,
        )
    writer.close()

    summary = index_with_ray(docs, config, embed_model, CHUNKING, RayConfig(workers=2))

    single = StoreConfig(path=tmp_path / "db", collection="single")
    expected = index_folder(docs, single, embed_model, CHUNKING)
    assert records(config, embed_model).keys() == records(single, embed_model).keys()
    assert summary.chunks_written <= expected.chunks_written


def test_a_worker_with_another_encoder_refuses_to_write(
    local_cluster: None, chroma_server_url: str, tmp_path: Path, embed_model
) -> None:
    """Stands for a node whose model or adapter files differ: its fingerprint is not the collection's."""
    from llama_index.core.schema import TextNode

    config = server(chroma_server_url, "ray-other", tmp_path)
    store = open_store(config, embed_model)
    prompts = embed_model.encoder_config.prompts.model_copy(update={"prefix": "text: "})
    other = embed_model.encoder_config.model_copy(update={"prompts": prompts})
    writer = RayWriter(RayConfig(workers=1), other, config, store.identity, 8)
    with pytest.raises(ModelMismatchError, match="every node must see the same model"):
        writer.write([TextNode(text="cats purr when happy")], lambda count: None)
    writer.close()
    assert store.collection.count() == 0


def test_an_embedded_database_is_refused_before_anything_starts(
    tmp_path: Path, embed_model, docs: Path
) -> None:
    with pytest.raises(InvalidInputError, match="Chroma server"):
        index_with_ray(docs, StoreConfig(path=tmp_path / "db"), embed_model, CHUNKING)
    assert not (tmp_path / "db").exists()


def test_the_example_indexes_the_sample_folder_and_answers(
    local_cluster: None, chroma_server_url: str, tiny_backbone_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    import runpy
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "index_with_ray.py"
    argv = ["--server", chroma_server_url, "--model", str(tiny_backbone_dir), "--question", "deploy"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [str(example), *argv])
        runpy.run_path(str(example), run_name="__main__")
    output = capsys.readouterr().out.splitlines()
    files = len(list((example.parent / "sample_docs").iterdir()))
    assert output[0].startswith(f"added {files}, updated 0, unchanged 0, removed 0, skipped 0;")
    assert len(output) == 4 and all(".md" in line for line in output[1:])
