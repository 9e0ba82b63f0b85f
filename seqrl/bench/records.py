"""The one record a benchmark run produces per trained row (``results.json``'s ``runs``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRecord:
    """One run: its algorithm, seed, parameters and metrics (metric names are stable)."""

    algorithm: str
    seed: int
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
