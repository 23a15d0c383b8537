"""What `adapt --pair-maker generated` costs and keeps, on a few Cranfield passages with the real SmolLM2.

Draws ``--passages`` passages of Cranfield's corpus (windows of 128 tokens, as `adapt` cuts them; never its
queries or qrels) with the default seed, has the embedded SmolLM2-135M-Instruct write
``--questions-per-passage`` questions for each, and runs the BM25 round trip over all of the corpus's
passages at several top-k: the first run generates, the others read the questions from the cache, as a
resumed `adapt` does. Reports questions and pairs a minute, CPU minutes, how many pairs each maker gave at
each k, and examples of kept and dropped questions.

    python benchmarks/generated_pairs.py [--passages 30] [--questions-per-passage 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CORPUS = ROOT.parent / "shared" / "data" / "cranfield"
TOPS = (1, 3, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=30)
    parser.add_argument("--questions-per-passage", type=int, default=3)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from transformers import AutoTokenizer

    from llara_rag.encoding.backbone import DEFAULT_MODEL, materialize, resolve_backbone
    from llara_rag.training.data.pseudo_pairs import PairConfig, make_pairs

    tokenizer = AutoTokenizer.from_pretrained(materialize(resolve_backbone(DEFAULT_MODEL)))
    load = os.getloadavg()[0]
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        for top in TOPS:
            config = PairConfig(
                maker="generated",
                max_passages=options.passages,
                questions_per_passage=options.questions_per_passage,
                round_trip_top=top,
                cache_dir=Path(cache),
            )
            _, report, _ = make_pairs(CORPUS, tokenizer, config)
            assert report.generation is not None
            runs.append({"round_trip_top": top, "makers": report.makers, "generation": report.generation})
    first = runs[0]["generation"]
    summary = {
        "corpus": "../shared/data/cranfield (corpus.jsonl only)",
        "generator": DEFAULT_MODEL,
        "passages": options.passages,
        "questions_per_passage": options.questions_per_passage,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": round(load, 1),
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generated_pairs.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# Generated-query pairs: cost and round-trip survival",
        "",
        f"`python benchmarks/generated_pairs.py --passages {options.passages} --questions-per-passage "
        f"{options.questions_per_passage}`: SmolLM2-135M-Instruct (embedded) writes questions for "
        f"{options.passages} Cranfield passages drawn with the seed; BM25 over all the corpus's passages "
        "round-trips them. The first row generated (the shared CPU's load average was "
        f"{load:.1f} on {os.cpu_count()} cores, {torch.get_num_threads()} torch threads); the others read the "
        "cache.",
        "",
        f"Generation: {first['written']} questions in {first['seconds'] / 60:.1f} minutes "
        f"({first['questions_per_minute']} questions a minute, {first['cpu_minutes']} CPU minutes); "
        f"{first['usable']} were usable questions (distinct, 4-40 words, ending in '?').",
        "",
        "| round-trip top k | passages asked | too short | no usable question | dropped by round trip "
        "| generated pairs | ict pairs | generated pairs a minute |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        g = run["generation"]
        rate = round(g["kept"] / (first["seconds"] / 60), 1) if first["seconds"] else "-"
        lines.append(
            f"| {run['round_trip_top']} | {g['passages']} | {g['too_short']} | {g['no_usable']} "
            f"| {g['filtered_out']} | {run['makers']['generated']} | {run['makers']['ict']} | {rate} |"
        )
    middle = next(run for run in runs if run["round_trip_top"] == 3)["generation"]["examples"]
    lines += ["", "Examples at top 3:", "", "| kept | dropped by the round trip | not a question |", "|---|---|---|"]
    for index in range(5):
        cells = [
            (middle.get(kind) or [])[index] if index < len(middle.get(kind) or []) else ""
            for kind in ("kept", "dropped", "unusable")
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/").replace("\n", " ") for cell in cells) + " |")
    (RESULTS / "generated_pairs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
