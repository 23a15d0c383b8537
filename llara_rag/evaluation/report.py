"""Presenting results: a markdown table (best value in bold), a JSON file and a bar chart per collection."""

from __future__ import annotations

import logging
from pathlib import Path

from llara_rag.evaluation.metrics import METRICS
from llara_rag.evaluation.results import EvaluationResult
from llara_rag.extras import require

logger = logging.getLogger(__name__)


def markdown_table(result: EvaluationResult) -> str:
    """A heading naming the collection and its size, then one row per system."""
    best = {metric: max(system.metrics[metric] for system in result.systems) for metric in METRICS}
    lines = [
        f"### {result.collection} ({result.split}: {result.documents} documents, {result.queries} judged queries)",
        "",
        "| system | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for system in result.systems:
        cells = [
            f"**{value:.3f}**" if value == best[metric] else f"{value:.3f}"
            for metric, value in ((metric, system.metrics[metric]) for metric in METRICS)
        ]
        lines.append(f"| {system.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: EvaluationResult, path: str | Path) -> Path:
    """Grouped bars: one group per metric, one bar per system, so the winner shows at a glance."""
    import numpy as np

    figure = require("matplotlib.figure", "eval").Figure(figsize=(9, 4.8), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(METRICS))
    width = 0.8 / len(result.systems)
    for index, system in enumerate(result.systems):
        values = [system.metrics[metric] for metric in METRICS]
        bars = axes.bar(
            positions + (index - (len(result.systems) - 1) / 2) * width, values, width, label=system.label
        )
        axes.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    axes.set_xticks(positions, list(METRICS))
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("score")
    axes.set_title(f"{result.collection} ({result.split}, {result.queries} queries)")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def write_report(result: EvaluationResult, directory: str | Path) -> dict[str, Path]:
    """Writes ``<collection>.json``, ``.md`` and ``.png`` into ``directory``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / f"{result.collection}.{kind}" for kind in ("json", "md", "png")}
    paths["json"].write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown_table(result), encoding="utf-8")
    plot(result, paths["png"])
    logger.info("Wrote %s", ", ".join(str(path) for path in paths.values()))
    return paths
