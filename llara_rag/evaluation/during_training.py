"""Retrieval scores of a model while it trains: the metric users care about, logged beside the loss.

``llara-rag adapt/finetune --eval-data DIR --eval-steps N`` pass a :class:`RetrievalEvaluator` to the
trainer, which every N steps encodes the collection with its current weights (the served prompts and
pooling) and logs ``eval_nDCG@10``, ``eval_Recall@100`` and the rest of ``eval``'s metrics to the console
and to every ``--report-to``.
Nothing of the collection reaches the training data: it is scored, never trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llara_rag.evaluation.harness import DEPTH
from llara_rag.evaluation.metrics import mean_scores
from llara_rag.ranking.beir import Collection, load_collection
from llara_rag.ranking.systems import TextEncoder, exact_top_k

logger = logging.getLogger(__name__)


class RetrievalEvaluator:
    """``eval``'s metrics (nDCG@10, Recall@100, ...) of dense retrieval on a BEIR folder's ``split``, every
    ``every`` steps.

    ``max_queries`` keeps the first queries (by id) so an evaluation costs less than encoding the whole
    query set; the corpus is always encoded whole, as retrieval needs it.
    """

    def __init__(
        self, dataset_dir: str | Path, *, every: int, split: str = "test", max_queries: int | None = None
    ) -> None:
        collection = load_collection(dataset_dir, split)
        if max_queries is not None:
            kept = sorted(collection.queries)[:max_queries]
            collection = Collection(
                name=collection.name,
                split=collection.split,
                doc_ids=collection.doc_ids,
                doc_texts=collection.doc_texts,
                queries={query: collection.queries[query] for query in kept},
                qrels={query: collection.qrels[query] for query in kept if query in collection.qrels},
            )
        self.collection = collection
        self.every = every

    def __call__(self, encoder: TextEncoder) -> dict[str, float]:
        collection = self.collection
        docs = encoder.encode_passages(list(collection.doc_texts))
        query_ids = list(collection.queries)
        queries = encoder.encode_queries([collection.queries[query] for query in query_ids])
        scores = mean_scores(
            collection.qrels, exact_top_k(query_ids, queries, collection.doc_ids, docs, DEPTH)
        )
        logger.info(
            "%s (%s, %d queries) at %s: %s",
            collection.name,
            collection.split,
            len(query_ids),
            encoder.fingerprint,
            ", ".join(f"{name} {value:.3f}" for name, value in scores.items()),
        )
        return scores
