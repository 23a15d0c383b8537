"""Labelled groups for the contrastive stage: a query, its positive passages and its hard negatives.

Two sources:
- a JSONL file, one ``{"query": str, "pos": [str, ...], "neg": [str, ...]}`` a line (FlagEmbedding's
  format; ``neg`` is optional);
- a BEIR folder, whose ``qrels/<split>.tsv`` judges ``queries.jsonl`` against ``corpus.jsonl``.

Negatives a source lacks are mined: each query is ranked against the documents (the BEIR corpus, or
every passage of the JSONL file) by BM25 or by the LLaRA encoder itself, the top ``skip_top`` ranks
are skipped (unjudged positives hide there), the query's own positives are removed, and negatives
are drawn at random, with a seed, from what is left down to ``depth``. Only the queries of the given
split exist here at all (:func:`load_collection` keeps just the queries judged in that split), so
mining for ``train`` never ranks, reads or is steered by a test query or a test judgment.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.errors import InvalidInputError
from llara_rag.ranking.beir import Collection, load_collection
from llara_rag.ranking.systems import RetrievalSystem
from llara_rag.retrieval.fusion import Run
from llara_rag.training.data.corpus import SkipLog, jsonl_rows

logger = logging.getLogger(__name__)

Miner = Literal["bm25", "dense", "none"]
JSONL_LAYOUT = 'one {"query": "...", "pos": ["..."], "neg": ["..."]} object a line ("neg" optional)'


class MiningConfig(BaseModel):
    """How many hard negatives each group gets and where they come from."""

    model_config = ConfigDict(frozen=True)

    miner: Miner = Field(
        default="bm25", description="Ranker of the candidates; none uses only given negatives."
    )
    negatives: int = Field(
        default=3, ge=0, description="Hard negatives per group (the reference uses 15 on GPUs)."
    )
    skip_top: int = Field(default=10, ge=0, description="Top ranks never used: likely unjudged positives.")
    depth: int = Field(default=100, gt=0, description="Negatives are drawn from ranks skip_top+1..depth.")
    seed: int = 42
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig, description="The model + adapter the dense miner ranks with."
    )
    cache_dir: Path | None = Field(default=None, description="Corpus vector cache of the dense miner.")


@dataclass(frozen=True)
class TrainingGroup:
    """One labelled query: any positive of it is a match, every negative is not."""

    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass
class PairsSummary(SkipLog):
    """What the groups were built from, what was mined and what was skipped, for the log and the model card."""

    source: str
    split: str | None
    miner: Miner
    groups: int = 0
    positives: int = 0
    given_negatives: int = 0
    mined_negatives: int = 0

    def describe(self) -> str:
        split = f" ({self.split} split)" if self.split else ""
        head = (
            f"{self.source}{split}: {self.groups} groups, {self.positives} positives, {self.given_negatives} "
            f"given and {self.mined_negatives} mined ({self.miner}) negatives"
        )
        return "\n".join([head, *self.skipped_lines()])

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "split": self.split,
            "miner": self.miner,
            "groups": self.groups,
            "positives": self.positives,
            "given_negatives": self.given_negatives,
            "mined_negatives": self.mined_negatives,
            "skipped": dict(self.skipped),
        }


def _texts(value: object) -> list[str] | None:
    """The non-empty strings of a JSON list, or None when the value is not a list of strings."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return [item.strip() for item in value if item.strip()]


def read_jsonl_groups(path: Path, summary: PairsSummary) -> list[TrainingGroup]:
    groups = []
    for name, row in jsonl_rows(path, summary):
        query = row.get("query") if isinstance(row, dict) else None
        if not isinstance(query, str) or not query.strip():
            summary.skip(name, "no non-empty 'query' string")
            continue
        positives, negatives = _texts(row.get("pos")), _texts(row.get("neg", []))
        if not positives:
            summary.skip(name, "no non-empty passage in the 'pos' list")
            continue
        if negatives is None:
            summary.skip(name, "'neg' is not a list of strings")
            continue
        groups.append(TrainingGroup(query.strip(), tuple(positives), tuple(negatives)))
    return groups


def _passage_pool(groups: list[TrainingGroup], name: str) -> Collection:
    """Every distinct passage of a JSONL file as a collection, so its queries can be ranked against them."""
    ids: dict[str, str] = {}
    for group in groups:
        for text in (*group.positives, *group.negatives):
            ids.setdefault(text, f"p{len(ids)}")
    return Collection(
        name=name,
        split="pairs",
        doc_ids=tuple(ids.values()),
        doc_texts=tuple(ids),
        queries={f"q{index}": group.query for index, group in enumerate(groups)},
        qrels={f"q{index}": {ids[text]: 1 for text in group.positives} for index, group in enumerate(groups)},
    )


def ranker(config: MiningConfig) -> RetrievalSystem:
    """What ranks the candidates: BM25, or the config's encoder with its corpus vectors cached."""
    from llara_rag.ranking.systems import BM25System

    if config.miner == "bm25":
        return BM25System()
    from llara_rag.encoding.encoder import LLaRAEncoder
    from llara_rag.ranking.cache import VectorCache
    from llara_rag.ranking.systems import DenseSystem, llara_label

    encoder = config.encoder
    # A private encoder rather than the process-wide one, so its weights are freed before training loads its
    # own; the settings match the harness's llara system, so evaluation reuses the cached corpus vectors.
    return DenseSystem(
        "miner",
        llara_label(encoder),
        lambda: LLaRAEncoder(encoder),
        VectorCache(config.cache_dir),
        settings={"passage_max_length": encoder.passage_max_length},
    )


def mine_negatives(collection: Collection, run: Run, config: MiningConfig) -> dict[str, list[str]]:
    """query id -> ``config.negatives`` document ids, never a positive nor one of the top ``skip_top`` ranks.

    They are drawn from ranks ``skip_top+1..depth`` of ``run``; when those hold too few (BM25 ranks only
    documents sharing a term with the query), random documents fill the rest, as FlagEmbedding's miner does.
    """
    mined = {}
    filled = 0
    for query_id in collection.queries:
        ranked = [doc_id for doc_id, _ in sorted(run.get(query_id, {}).items(), key=lambda item: -item[1])]
        excluded = {doc_id for doc_id, score in collection.qrels[query_id].items() if score > 0}
        excluded.update(ranked[: config.skip_top])
        candidates = [doc_id for doc_id in ranked[: config.depth] if doc_id not in excluded]
        rng = random.Random(f"{config.seed}:{query_id}")
        chosen = rng.sample(candidates, min(config.negatives, len(candidates)))
        if len(chosen) < config.negatives:
            rest = [
                doc_id for doc_id in collection.doc_ids if doc_id not in excluded and doc_id not in chosen
            ]
            extra = rng.sample(rest, min(config.negatives - len(chosen), len(rest)))
            filled += len(extra)
            chosen += extra
        mined[query_id] = chosen
    if filled:
        logger.info("%d of the negatives are random documents: the ranking held too few candidates", filled)
    return mined


def _mine(collection: Collection, config: MiningConfig) -> dict[str, list[str]]:
    """Mined document *texts* per query id."""
    logger.info(
        "Mining %d hard negatives for %d queries with %s (ranks %d-%d)",
        config.negatives,
        len(collection.queries),
        config.miner,
        config.skip_top + 1,
        config.depth,
    )
    system = ranker(config)
    run = system.retrieve(collection, config.depth)
    texts = dict(zip(collection.doc_ids, collection.doc_texts))
    return {
        query_id: [texts[doc_id] for doc_id in ids]
        for query_id, ids in mine_negatives(collection, run, config).items()
    }


def _jsonl_groups(path: Path, config: MiningConfig, summary: PairsSummary) -> list[TrainingGroup]:
    groups = read_jsonl_groups(path, summary)
    summary.given_negatives = sum(len(group.negatives) for group in groups)
    short = [index for index, group in enumerate(groups) if len(group.negatives) < config.negatives]
    if not short or config.miner == "none":
        return groups
    mined = _mine(_passage_pool(groups, path.name), config)
    topped = list(groups)
    for index in short:
        group = groups[index]
        extra = [text for text in mined[f"q{index}"] if text not in group.negatives]
        extra = extra[: config.negatives - len(group.negatives)]
        summary.mined_negatives += len(extra)
        topped[index] = TrainingGroup(group.query, group.positives, group.negatives + tuple(extra))
    return topped


def _beir_groups(folder: Path, split: str, config: MiningConfig) -> list[TrainingGroup]:
    collection = load_collection(folder, split)
    mined = _mine(collection, config) if config.miner != "none" and config.negatives else {}
    texts = dict(zip(collection.doc_ids, collection.doc_texts))
    return [
        TrainingGroup(
            query=collection.queries[query_id],
            positives=tuple(
                texts[doc_id] for doc_id, score in judged.items() if score > 0 and doc_id in texts
            ),
            negatives=tuple(mined.get(query_id, ())),
        )
        for query_id, judged in collection.qrels.items()
    ]


def load_groups(
    source: str | Path, split: str, config: MiningConfig
) -> tuple[list[TrainingGroup], PairsSummary]:
    """Reads a JSONL file or a BEIR folder (its ``split`` qrels only) into groups with hard negatives."""
    path = Path(source).expanduser()
    if path.is_file():
        if not path.name.lower().endswith((".jsonl", ".jsonl.gz")):
            raise InvalidInputError(
                f"{path} is not a .jsonl (or .jsonl.gz) file; pass a JSONL file ({JSONL_LAYOUT}) or a BEIR folder."
            )
        summary = PairsSummary(source=str(path), split=None, miner=config.miner)
        groups = _jsonl_groups(path, config, summary)
    elif path.is_dir():
        if config.miner == "none" and config.negatives:
            raise InvalidInputError(
                f"A BEIR folder has no negatives of its own; mine them (--miner bm25 or dense) or train on in-batch "
                f"negatives alone (--negatives 0) for {path}."
            )
        summary = PairsSummary(source=str(path), split=split, miner=config.miner)
        groups = _beir_groups(path, split, config)
        summary.mined_negatives = sum(len(group.negatives) for group in groups)
    else:
        raise InvalidInputError(
            f"Training pairs {path} do not exist; pass a JSONL file ({JSONL_LAYOUT}) or a BEIR folder."
        )
    kept = []
    for index, group in enumerate(groups):
        if config.negatives and not group.negatives:
            summary.skip(f"query {index} ({group.query[:40]!r})", "no negative given or mined")
            continue
        kept.append(group)
    summary.groups = len(kept)
    summary.positives = sum(len(group.positives) for group in kept)
    if not kept:
        raise InvalidInputError(
            f"No usable training group in {path}:\n{summary.describe()}\nExpected {JSONL_LAYOUT}."
        )
    logger.info("Training groups: %s", summary.describe())
    return kept, summary
