"""Retrieval over an indexed collection: lexical (BM25), dense (LLaRA vectors in Chroma) or their hybrid.

:class:`LLaRAHybridRetriever` is a LlamaIndex retriever, so any query or chat engine takes it; ``llara-rag
query``, ``llara-rag chat``, the examples and ``benchmarks/retrieval_paths.py`` all retrieve through it.
Each side ranks as ``eval`` ranks: BM25 with :func:`llara_rag.indexing.lexical.bm25_top` (a chunk sharing no term
with the question is not retrieved), LLaRA by cosine similarity. The hybrid is
:func:`llara_rag.retrieval.fusion.fuse`, the function ``eval``'s hybrid is scored with, over each side's
best ``min(candidates, collection size)`` chunks (1,000 by default, as ``eval``): a chunk one side did
not return gets that side's lowest z-score.

    retriever = open_retriever(StoreConfig(path="db"), LLaRAEmbedding(), RetrievalConfig(mode="hybrid"))
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llara_rag.errors import InvalidInputError
from llara_rag.retrieval.fusion import (
    CANDIDATES,
    DEFAULT_ALPHA,
    DEFAULT_MODE,
    DEFAULT_WEIGHTING,
    FusionWeighting,
    RetrievalMode,
    fuse,
    top,
)
from llara_rag.settings import UserSettings, not_unicode

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from llara_rag.encoding.embedding import LLaRAEmbedding
    from llara_rag.indexing.lexical import LexicalIndex
    from llara_rag.indexing.store import StoreConfig

logger = logging.getLogger(__name__)

SIDES = ("lexical", "dense")
"""The two rankings, in the order ``eval``'s hybrid fuses them (BM25 first)."""
BOOKKEEPING_KEYS = {"document_id", "doc_id", "ref_doc_id"}
"""Chunk metadata LlamaIndex keeps for itself: not worth filtering on."""
FOUND_BY_KEY = "found_by"
"""Node metadata: the sides that returned the chunk and its rank in each, e.g. ``{"dense": 3}``."""


class RetrievalConfig(UserSettings):
    """How chunks are retrieved: the mode, the hybrid's weight and depth, how many, and which.

    Invalid values are refused naming the `query`/`chat` flag (:mod:`llara_rag.settings`).
    """

    model_config = ConfigDict(frozen=True)

    mode: RetrievalMode = Field(
        default=DEFAULT_MODE,
        description="Where chunks come from: lexical (BM25 over the collection's lexical index, as `eval` "
        "scores BM25), dense (LLaRA vectors in Chroma) or hybrid (both, z-normalised scores summed as in "
        "`eval`'s hybrid), the best measured with the shipped default.",
        json_schema_extra={"flag": "--mode"},
    )
    top_k: int = Field(default=5, gt=0, description="Chunks returned.", json_schema_extra={"flag": "-k"})
    alpha: float = Field(
        default=DEFAULT_ALPHA,
        ge=0,
        le=1,
        description="The dense side's weight in the hybrid; the lexical side gets 1 - alpha.",
        json_schema_extra={"flag": "--alpha"},
    )
    fusion: FusionWeighting = Field(
        default=DEFAULT_WEIGHTING,
        description="How the hybrid weighs its sides for each question: head (alpha and 1 - alpha scaled by "
        "how far each side's ten best stand out from its other candidates, so a side that cannot read the "
        "question weighs less) or fixed (alpha and 1 - alpha as given).",
        json_schema_extra={"flag": "--fusion"},
    )
    candidates: int = Field(
        default=CANDIDATES,
        gt=0,
        description="Chunks each side scores for the hybrid (at most the collection's): deep enough that "
        "the z-scores see each side's score distribution, not only its head.",
    )
    where: dict[str, str | int | float] = Field(
        default_factory=dict, description="Only chunks whose metadata equals every item (e.g. file_name)."
    )
    spelling: bool = Field(
        default=True,
        description="Correct a misspelt question word (one the collection and English do not know, one "
        "edit from a word of the collection) before searching, on both sides.",
        json_schema_extra={"flag": "--no-spelling"},
    )

    @field_validator("where")
    @classmethod
    def _metadata_keys_only(cls, where: dict[str, str | int | float]) -> dict[str, str | int | float]:
        """Keys are matched for equality: Chroma's operators (``$or``, ``$gt``) would reach its parser."""
        for key in where:
            if not key or key.startswith("$"):
                raise ValueError(
                    f"where {key!r}: not a metadata key (operators such as $or are not taken); filter by "
                    'a key\'s exact value, e.g. --where file_name=notes.md or {"file_name": "notes.md"}.'
                )
        return where


def check_question(question: str) -> str:
    """``question`` when it has words to search for; the same refusal for the library and the CLI."""
    if not question.strip():
        raise InvalidInputError(
            f'The question {question!r} is empty; ask in words, e.g. llara-rag query "how are keys rotated?".'
        )
    if problem := not_unicode(question):
        raise InvalidInputError(f"The question {problem}; ask it in UTF-8 text.")
    return question


def chunk_number(node_id: str) -> int | None:
    """1-based position in its file, from the ``<document id>#<position>`` ids ingestion gives chunks."""
    _, separator, position = node_id.rpartition("#")
    return int(position) + 1 if separator and position.isdigit() else None


def source_label(number: int, name: str, chunk: int | None, score: float | None) -> str:
    """``[1] notes.md, chunk 3 (score 0.81)``: how ``query`` and ``chat`` number and name a retrieved chunk
    (both from 1; ``--json`` keeps the full score)."""
    where = f", chunk {chunk}" if chunk is not None else ""
    scored = f" (score {score:.2f})" if score is not None else ""
    return f"[{number}] {name}{where}{scored}"


class Hit(BaseModel):
    """One retrieved chunk, and which side found it."""

    score: float = Field(
        description="The mode's score: cosine similarity (dense), BM25 (lexical), the weighted sum of "
        "z-scores (hybrid)."
    )
    text: str
    file_name: str | None
    metadata: dict[str, Any]
    node_id: str
    found_by: dict[str, int] = Field(
        description="Each side that returned the chunk -> its rank there (1 = best)."
    )

    @classmethod
    def of(cls, hit: NodeWithScore) -> Hit:
        metadata = {key: value for key, value in hit.node.metadata.items() if key != FOUND_BY_KEY}
        return cls(
            score=hit.get_score(),
            text=hit.node.get_content(),
            file_name=metadata.get("file_name"),
            metadata=metadata,
            node_id=hit.node.node_id,
            found_by=hit.node.metadata.get(FOUND_BY_KEY, {}),
        )

    def describe_sides(self) -> str:
        """``dense #3, lexical #1``: where each side ranked this chunk."""
        return ", ".join(f"{side} #{rank}" for side, rank in self.found_by.items())

    def label(self, number: int) -> str:
        return source_label(number, self.file_name or self.node_id, chunk_number(self.node_id), self.score)


def chroma_where(where: dict[str, str | int | float]) -> dict[str, Any] | None:
    """Equality on every item, in Chroma's filter language."""
    clauses = [{key: value} for key, value in where.items()]
    if len(clauses) > 1:
        return {"$and": clauses}
    return clauses[0] if clauses else None


class LLaRAHybridRetriever(BaseRetriever):
    """A collection searched lexically, densely or both, fused exactly as ``eval``'s hybrid.

    Each returned node's metadata says which side(s) returned it and at what rank (:data:`FOUND_BY_KEY`;
    hidden from the LLM and the embedder). The lexical index is the one loaded when the retriever was
    made: a retriever kept open across an ``index`` run should be opened again.
    """

    def __init__(
        self,
        collection: Collection,
        embed_model: LLaRAEmbedding,
        lexical: LexicalIndex | None,
        config: RetrievalConfig | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        self.config = config or RetrievalConfig()
        if self.config.mode != "dense" and lexical is None:
            raise ValueError(
                f"mode {self.config.mode!r} needs the collection's lexical index (see open_retriever)"
            )
        self.collection = collection
        self.embed_model = embed_model
        self.lexical = lexical
        self._where = chroma_where(self.config.where)
        super().__init__(callback_manager=callback_manager)

    def _depth(self) -> int:
        """Chunks each side returns: the top k alone, or the hybrid's candidates (counted in the lexical
        index, which holds the collection's chunks and saves asking Chroma on every query)."""
        if self.config.mode != "hybrid":
            return self.config.top_k
        assert self.lexical is not None
        return min(self.config.candidates, len(self.lexical.ids))

    def _dense(self, query_bundle: QueryBundle, depth: int) -> dict[str, float]:
        if query_bundle.embedding is None:
            query_bundle.embedding = self.embed_model.get_agg_embedding_from_queries(
                query_bundle.embedding_strs
            )
        found = self.collection.query(
            query_embeddings=[query_bundle.embedding],
            n_results=depth,
            where=self._where,
            include=["distances"],
        )
        # In cosine space Chroma's distance is 1 - cosine: the same scores as ``eval``'s dot products.
        return {chunk: 1.0 - distance for chunk, distance in zip(found["ids"][0], found["distances"][0])}

    def _lexical(self, question: str, depth: int) -> dict[str, float]:
        assert self.lexical is not None
        allowed = (
            None if self._where is None else set(self.collection.get(where=self._where, include=[])["ids"])
        )
        return self.lexical.search(question, depth, allowed)

    def corrected(self, question: str) -> str:
        """The question as searched: spelling-corrected against the collection's words when asked for and
        its lexical index keeps them."""
        speller = self.lexical.speller if self.config.spelling and self.lexical is not None else None
        return speller.correct(question) if speller is not None else question

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        check_question(query_bundle.query_str)
        question = self.corrected(query_bundle.query_str)
        if question != query_bundle.query_str:
            query_bundle = QueryBundle(question)
        depth = self._depth()
        if depth == 0:
            return []
        mode = self.config.mode
        rankings = {
            "lexical": self._lexical(query_bundle.query_str, depth) if mode != "dense" else {},
            "dense": self._dense(query_bundle, depth) if mode != "lexical" else {},
        }
        if mode == "hybrid":
            weights = {"lexical": 1 - self.config.alpha, "dense": self.config.alpha}
            runs = [{"q": rankings[side]} for side in SIDES]
            scores = fuse(runs, [weights[side] for side in SIDES], self.config.top_k, self.config.fusion).get(
                "q", {}
            )
        else:
            scores = top({"q": rankings[mode]}, self.config.top_k)["q"]
        if not scores:
            return []
        ranks = {
            side: {chunk: rank for rank, chunk in enumerate(top({"q": rankings[side]}, depth)["q"], 1)}
            for side in SIDES
        }
        records = self.collection.get(ids=list(scores), include=["documents", "metadatas"])
        stored = dict(zip(records["ids"], zip(records["documents"], records["metadatas"])))
        return [
            NodeWithScore(
                node=self._node(
                    *stored[chunk], {side: ranks[side][chunk] for side in SIDES if chunk in ranks[side]}
                ),
                score=score,
            )
            for chunk, score in scores.items()
        ]

    @staticmethod
    def _node(text: str, metadata: dict[str, Any], found_by: dict[str, int]) -> BaseNode:
        """The chunk as LlamaIndex wrote it, with :data:`FOUND_BY_KEY` added and hidden from the models."""
        node = metadata_dict_to_node(dict(metadata), text=text)
        node.metadata[FOUND_BY_KEY] = found_by
        node.excluded_llm_metadata_keys = [*node.excluded_llm_metadata_keys, FOUND_BY_KEY]
        node.excluded_embed_metadata_keys = [*node.excluded_embed_metadata_keys, FOUND_BY_KEY]
        return node


def open_retriever(
    config: StoreConfig, embed_model: LLaRAEmbedding, retrieval: RetrievalConfig | None = None
) -> LLaRAHybridRetriever:
    """The collection of ``config``, checked against ``embed_model``, as a retriever in ``retrieval``'s mode.

    A mode that needs BM25 loads the collection's lexical index, and refuses one that is missing or out of
    step (``LexicalIndexError``, naming the fix) rather than answering from the dense side alone.
    """
    from llara_rag.indexing.lexical import open_lexical_index
    from llara_rag.indexing.store import open_store

    retrieval = retrieval or RetrievalConfig()
    collection = open_store(config, embed_model, create=False).collection
    if retrieval.mode != "dense":
        lexical = open_lexical_index(config, collection)
    elif retrieval.spelling:
        lexical = spelling_source(config, collection)
    else:
        lexical = None
    return LLaRAHybridRetriever(collection, embed_model, lexical, retrieval)


def spelling_source(config: StoreConfig, collection: Collection) -> LexicalIndex | None:
    """The lexical index whose words a dense search corrects spelling against; None (no correction) when
    the collection has none in step, which dense search does not otherwise need."""
    from llara_rag.errors import LexicalIndexError
    from llara_rag.indexing.lexical import open_lexical_index

    try:
        return open_lexical_index(config, collection)
    except LexicalIndexError as error:
        logger.info("Searching without spelling correction: %s", error)
        return None


def search(retriever: BaseRetriever, question: str) -> list[Hit]:
    """The chunks ``retriever`` returns for ``question``, best first."""
    return [Hit.of(hit) for hit in retriever.retrieve(check_question(question))]


def why_no_results(retriever: LLaRAHybridRetriever) -> str:
    """Why a search returned nothing, and what to try: an empty collection, a filter nothing matches, or
    (lexical) a question sharing no word with any chunk."""
    from llara_rag.indexing.ingest import VERSION_KEY

    collection = retriever.collection
    if collection.count() == 0:
        return (
            f"collection {collection.name!r} holds no chunks; index documents into it with "
            "`llara-rag index DOCS`."
        )
    where = retriever.config.where
    if where and not collection.get(where=chroma_where(where), limit=1, include=[])["ids"]:
        sample = collection.get(limit=1, include=["metadatas"])["metadatas"] or [{}]
        keys = sorted(
            key
            for key in sample[0]
            if not key.startswith("_") and key not in {*BOOKKEEPING_KEYS, VERSION_KEY}
        )
        filters = " ".join(f"--where {key}={value}" for key, value in where.items())
        return (
            f"no chunk matches {filters}; chunks have the keys {', '.join(keys)} "
            "(e.g. --where file_name=notes.md), and values must match exactly."
        )
    return "no chunk shares a word with the question; try other words, or --mode hybrid or dense."
