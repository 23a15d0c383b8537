"""What an evaluation produces: one row of metrics per system on one collection, and what was skipped."""

from __future__ import annotations

from pydantic import BaseModel, Field

from llara_rag.ranking.beir import SkippedInputs


class SystemResult(BaseModel):
    name: str
    label: str
    metrics: dict[str, float]
    seconds: float = Field(
        description="Wall time of this system's retrieval (encoding included unless cached)."
    )
    settings: dict[str, object]


class EvaluationResult(BaseModel):
    """One collection's results: a row of :data:`METRICS` per system, plus what the data made us skip."""

    collection: str
    split: str
    documents: int
    queries: int
    skipped: SkippedInputs
    systems: list[SystemResult]

    def best(self, metric: str = "nDCG@10") -> SystemResult:
        return max(self.systems, key=lambda system: system.metrics[metric])

    def scores(self, metric: str = "nDCG@10") -> dict[str, float]:
        """system name -> metric, e.g. ``result.scores()["llara"]``."""
        return {system.name: system.metrics[metric] for system in self.systems}
