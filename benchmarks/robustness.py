"""Retrieval under the ways people type: the same test queries in lower case, in capitals, without
punctuation and with typos, and the corpus stored in capitals.

For each collection and variant, nDCG@10 of BM25, all-MiniLM-L6-v2, the LLaRA default (as shipped, and
with ``--lowercase`` settings side by side), its hybrid with BM25 under every fusion of
``llara_rag.retrieval.fusion.FUSIONS`` and the MiniLM + BM25 hybrid a user could build instead. Variants:

- ``as written``: the collection's queries;
- ``lower`` / ``UPPER``: the queries lower-cased / upper-cased;
- ``no punctuation``: hyphens and slashes become spaces, every other punctuation mark is dropped;
- ``typos``: one or two typos a query (seeded per query), each an adjacent swap or a dropped letter
  inside a different word of four or more letters;
- ``corpus UPPER``: the documents upper-cased, the queries as written (the corpus encoded again);
- ``as written, corrected`` / ``typos, corrected``: those queries spelling-corrected against the corpus's
  words (``llara_rag.indexing.spelling``), as ``query``, ``chat`` and ``serve`` search by default.

Corpus vectors are cached (``VectorCache``), so only the upper-cased corpus and new encoders pay for
encoding; queries are encoded per variant.

    python benchmarks/robustness.py [adi cranfield cacm scifact] [--lowercase off,on]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

from llara_rag.encoding.adapter import adapter_digest, resolve_adapter
from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.evaluation import VectorCache, load_collection
from llara_rag.evaluation.metrics import mean_scores
from llara_rag.indexing.spelling import Speller
from llara_rag.ranking.baselines import minilm_system
from llara_rag.ranking.beir import Collection
from llara_rag.ranking.systems import BM25System, DenseSystem, RetrievalSystem, llara_system
from llara_rag.retrieval.fusion import CANDIDATES, HEAD, Run, convex_fusion, fuse, head_strength

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
COLLECTIONS = ("adi", "cranfield", "cacm", "scifact")
DEPTH = 100
SEED = 13
AS_WRITTEN = "as written"
CORPUS_UPPER = "corpus UPPER"
CORRECTED = (AS_WRITTEN, "typos")
"""Variants also measured spelling-corrected, as the retriever searches by default."""
logger = logging.getLogger("benchmarks.robustness")


def without_punctuation(text: str) -> str:
    text = re.sub(r"[-/]", " ", text)
    return " ".join(re.sub(r"[^\w\s]", "", text).split())


def with_typos(text: str, seed: str) -> str:
    """One or two typos in distinct words of 4+ letters: an adjacent swap or a dropped letter, seeded."""
    rng = random.Random(f"{SEED}:{seed}")
    words = text.split(" ")
    eligible = [i for i, word in enumerate(words) if len(word) >= 4 and word.isalpha()]
    for index in rng.sample(eligible, min(len(eligible), rng.choice((1, 2)))):
        word = words[index]
        position = rng.randrange(1, len(word) - 1)
        if rng.random() < 0.5:
            word = word[: position - 1] + word[position] + word[position - 1] + word[position + 1 :]
        else:
            word = word[:position] + word[position + 1 :]
        words[index] = word
    return " ".join(words)


QUERY_VARIANTS: dict[str, Callable[[str, str], str]] = {
    AS_WRITTEN: lambda text, _: text,
    "lower": lambda text, _: text.lower(),
    "UPPER": lambda text, _: text.upper(),
    "no punctuation": lambda text, _: without_punctuation(text),
    "typos": with_typos,
}


def by_agreement(normalised_runs: list[dict[str, float]]) -> list[float]:
    """A candidate measured against the library's weightings: equal weights while the two heads agree,
    moving towards head-strength weights as they disagree."""
    import heapq

    heads = [set(heapq.nlargest(HEAD, scores, key=scores.__getitem__)) for scores in normalised_runs]
    overlap = len(set.intersection(*heads)) / HEAD if all(heads) else 0.0
    strengths = [head_strength(scores) for scores in normalised_runs]
    total = sum(strengths) or 1.0
    return [overlap / 2 + (1 - overlap) * strength / total for strength in strengths]


FUSIONS: dict[str, Callable[[Run, Run, int], Run]] = {
    "fixed": lambda dense, lexical, depth: fuse([lexical, dense], [0.5, 0.5], depth, "fixed"),
    "head": lambda dense, lexical, depth: fuse([lexical, dense], [0.5, 0.5], depth, "head"),
    "agreement": lambda dense, lexical, depth: convex_fusion([lexical, dense], by_agreement, depth),
}
"""The hybrid's weightings: the library's two (``fixed``, its default, first) and a candidate."""


def share_folded_vectors(collection: Collection, dense: dict[str, RetrievalSystem]) -> None:
    """A corpus already in lower case reads the same to a lower-casing encoder as to its case-sensitive
    twin (same backbone and adapter): the twin's cached vectors are stored under the folding encoder's key
    instead of encoding the corpus again."""
    if any(text != text.lower() for text in collection.doc_texts):
        return
    systems = [system for system in dense.values() if isinstance(system, DenseSystem)]
    for folding in (s for s in systems if getattr(s.encoder, "lowercase", False)):
        for cased in (s for s in systems if getattr(s.encoder, "lowercase", None) is False):
            same = folding.encoder.config.model_copy(update={"lowercase": False}) == cased.encoder.config
            key = VectorCache.key(cased.encoder.fingerprint, cased.settings, collection.digest)
            path = cased.cache.path(collection.name, key)
            if same and folding.settings == cased.settings and path.is_file():
                vectors = cased.cache.load(path, collection.doc_ids)
                target = VectorCache.key(folding.encoder.fingerprint, folding.settings, collection.digest)
                folding.cache.save(folding.cache.path(collection.name, target), collection.doc_ids, vectors)


def reuse_folded_vectors(
    collection: Collection, upper: Collection, dense: dict[str, RetrievalSystem]
) -> None:
    """A lower-casing encoder reads the upper-cased corpus as the corpus itself, except where upper- then
    lower-casing does not give a text back (SciFact's 'µ' comes back as Greek 'μ'): those few documents are
    encoded, every other vector is taken from the corpus's cached ones."""
    for system in dense.values():
        if not (isinstance(system, DenseSystem) and getattr(system.encoder, "lowercase", False)):
            continue
        folded = [
            dataclasses.replace(c, doc_texts=tuple(t.lower() for t in c.doc_texts))
            for c in (collection, upper)
        ]
        paths = [
            system.cache.path(c.name, VectorCache.key(system.encoder.fingerprint, system.settings, c.digest))
            for c in folded
        ]
        vectors = system.cache.load(paths[0], collection.doc_ids)
        if vectors is None or paths[1].is_file():
            continue
        changed = [i for i, (a, b) in enumerate(zip(*(c.doc_texts for c in folded))) if a != b]
        if changed:
            vectors = vectors.copy()
            vectors[changed] = system.encoder.encode_passages([folded[1].doc_texts[i] for i in changed])
        logger.info(
            "%s, %s: %d of %d documents read differently, encoded",
            collection.name,
            CORPUS_UPPER,
            len(changed),
            len(vectors),
        )
        system.cache.save(paths[1], collection.doc_ids, vectors)


def variants(collection: Collection, corpus_variant: bool) -> dict[str, Collection]:
    out = {
        name: dataclasses.replace(
            collection, queries={qid: change(text, qid) for qid, text in collection.queries.items()}
        )
        for name, change in QUERY_VARIANTS.items()
    }
    if corpus_variant:
        out[CORPUS_UPPER] = dataclasses.replace(
            collection, doc_texts=tuple(text.upper() for text in collection.doc_texts)
        )
    speller = Speller.from_texts(collection.doc_texts)
    for name in CORRECTED:
        queries = out[name].queries
        corrected = {qid: speller.correct(text) for qid, text in queries.items()}
        changed = sum(corrected[qid] != text for qid, text in queries.items())
        logger.info(
            "%s, %s: spelling correction changed %d of %d queries",
            collection.name,
            name,
            changed,
            len(queries),
        )
        out[f"{name}, corrected"] = dataclasses.replace(collection, queries=corrected)
    return out


def score(collection: Collection, run: Run) -> float:
    return round(mean_scores(collection.qrels, run)["nDCG@10"], 4)


def measure(
    collection: Collection, dense: dict[str, RetrievalSystem], bm25: RetrievalSystem
) -> dict[str, float]:
    """nDCG@10 of every system and fusion on one variant of a collection."""
    scores: dict[str, float] = {}
    lexical = bm25.retrieve(collection, CANDIDATES)
    scores["bm25"] = score(collection, lexical)
    for name, system in dense.items():
        run = system.retrieve(collection, CANDIDATES)
        scores[name] = score(collection, run)
        for fusion_name, fused in FUSIONS.items():
            scores[f"{name}+bm25 {fusion_name}"] = score(collection, fused(run, lexical, DEPTH))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("collections", nargs="*", default=list(COLLECTIONS))
    parser.add_argument("--adapter", default="default")
    parser.add_argument(
        "--lowercase",
        default="adapter",
        help="comma-separated LLaRA rows: 'adapter' (as the adapter was trained), 'on', 'off'",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="the LLaRA rows' arithmetic"
    )
    parser.add_argument("--output", default=str(RESULTS / "robustness"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cache = VectorCache()
    settings = {"adapter": None, "on": True, "off": False}
    dense: dict[str, RetrievalSystem] = {"minilm": minilm_system(cache)}
    encoders = {}
    for choice in args.lowercase.split(","):
        config = EncoderConfig(adapter=args.adapter, lowercase=settings[choice], precision=args.precision)
        name = "llara" if choice == "adapter" else f"llara lowercase {choice}"
        encoders[name] = {"lowercase": config.lowercase, "precision": config.precision}
        dense[name] = llara_system(config, cache, name=name)
    results: dict[str, dict[str, dict[str, float]]] = {}
    started = time.time()
    for name in args.collections:
        collection = load_collection(DATA / name, "test")
        share_folded_vectors(collection, dense)
        results[name] = {}
        for variant, changed in variants(collection, True).items():
            if variant == CORPUS_UPPER:
                reuse_folded_vectors(collection, changed, dense)
            results[name][variant] = measure(changed, dense, BM25System())
            logger.info("%s | %s | %s", name, variant, results[name][variant])
    output = Path(args.output)
    adapter = resolve_adapter(args.adapter, default_backbone=True)
    digest = adapter_digest(adapter) if adapter else "none"
    kept, kept_encoders = earlier_results(output.with_suffix(".json"), digest, set(results))
    payload = {
        "command": "python benchmarks/robustness.py " + " ".join(args.collections),
        "machine": platform.machine(),
        "adapter": args.adapter,
        "adapter_digest": digest,
        "encoders": {**kept_encoders, **{name: encoders for name in results}},
        "fusions": list(FUSIONS),
        "seconds": round(time.time() - started),
        "results": {**kept, **results},
    }
    output.with_suffix(".json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    output.with_suffix(".md").write_text(report(payload), encoding="utf-8")
    logger.info("Wrote %s and .md", output.with_suffix(".json"))


def earlier_results(path: Path, digest: str, measured: set[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """The collections (and their LLaRA rows' settings, by collection) an earlier run of the same adapter
    (same digest) measured and this one did not, so a slow collection can be a run of its own."""
    if not path.is_file():
        return {}, {}
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if earlier.get("adapter_digest") != digest:
        return {}, {}
    kept = {name: scores for name, scores in earlier["results"].items() if name not in measured}
    return kept, {name: earlier["encoders"][name] for name in kept}


def dense_goal(scores: dict[str, dict[str, float]], dense: str) -> str:
    """Dense within 0.02 of as-written under case and punctuation variants, 0.05 under typos, searched as the
    retriever searches (typos spelling-corrected); the encoder alone under uncorrected typos is reported."""
    original = scores[AS_WRITTEN][dense]
    misses, worst = [], (0.0, AS_WRITTEN)
    judged = [v for v in scores if v != AS_WRITTEN and not (v in CORRECTED and f"{v}, corrected" in scores)]
    for variant in judged:
        if dense not in scores[variant]:
            continue
        change = scores[variant][dense] - original
        worst = min(worst, (change, variant))
        if -change > (0.05 if variant.startswith("typos") else 0.02):
            misses.append(f"{variant} {change:+.3f}")
    verdict = "met" if not misses else "not met (" + ", ".join(misses) + ")"
    alone = ""
    if "typos, corrected" in scores and dense in scores["typos"]:
        alone = f"; uncorrected typos (the encoder alone) {scores['typos'][dense] - original:+.3f}"
    return (
        f"{dense}: within 0.02 of as written (0.05 under typos) on every variant, as the retriever searches — "
        f"{verdict}; largest drop {worst[0]:+.3f} ({worst[1]}){alone}"
    )


def hybrid_goal(scores: dict[str, dict[str, float]], dense: str, hybrid: str) -> str:
    """The hybrid at least max(BM25, its dense side) - 0.005 on every variant."""
    margins = [
        (values[hybrid] - max(values["bm25"], values[dense]), variant)
        for variant, values in scores.items()
        if hybrid in values
    ]
    misses = [f"{variant} {margin:+.3f}" for margin, variant in margins if margin < -0.005]
    worst = min(margins)
    verdict = "met" if not misses else "not met (" + ", ".join(misses) + ")"
    return f"{hybrid} >= max(BM25, dense) - 0.005 on every variant — {verdict}; smallest margin {worst[0]:+.3f} ({worst[1]})"


def report(payload: dict) -> str:
    results = payload["results"]
    lines = [
        "# Robustness to how queries and documents are typed",
        "",
        (
            f"`{payload['command']}` on {payload['machine']}, adapter `{payload['adapter']}` "
            f"({payload['adapter_digest']}); nDCG@10 on the test queries, {payload['seconds'] / 60:.0f} min "
            "(collections it did not name are kept from earlier runs of the same adapter). Variants and "
            "fusions: the docstring of `benchmarks/robustness.py`; a cell '—' was not measured."
        ),
    ]
    for name, scores in results.items():
        variants_ = list(scores)
        systems = list(scores[variants_[0]])
        lines += [
            "",
            f"### {name}",
            "",
            f"LLaRA rows: {payload['encoders'][name]}",
            "",
            "| system | " + " | ".join(variants_) + " |",
            "|---|" + "---:|" * len(variants_),
        ]
        for system in systems:
            cells = (f"{scores[v][system]:.3f}" if system in scores[v] else "—" for v in variants_)
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines.append("")
        for dense in (s for s in systems if s.startswith("llara") and "+" not in s):
            lines.append(f"- {dense_goal(scores, dense)}")
            lines += [
                f"- {hybrid_goal(scores, dense, f'{dense}+bm25 {fusion}')}" for fusion in payload["fusions"]
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
