"""Paired comparisons and tables for benchmark reports: differences per seed against a reference row, their
95% intervals (Student t over the pairs, and a seeded percentile bootstrap), win counts, monospace tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .records import RunRecord


def paired_differences(records: list[RunRecord], metric: str, reference: str = "mle") -> dict[str, list[float]]:
    """Per algorithm, the differences ``metric(run) − metric(reference run)`` over the pairs that share a seed
    and the reference's parameters (its "-" parameters match anything): same data, same start."""
    refs = [r for r in records if r.algorithm == reference and metric in r.metrics]
    out: dict[str, list[float]] = {}
    for r in records:
        if r.algorithm == reference or metric not in r.metrics:
            continue
        for ref in refs:
            if ref.seed == r.seed and all(r.params.get(k) == v for k, v in ref.params.items() if v != "-"):
                out.setdefault(r.algorithm, []).append(float(r.metrics[metric]) - float(ref.metrics[metric]))
                break
    return out


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: the same table every time)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap of no values")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
"""Student t 0.975 quantiles for 1–30 degrees of freedom (standard tables, three decimals)."""


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (table to 30, then the Cornish–Fisher
    expansion around z = 1.95996, within 0.001 of the exact value there)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be ≥ 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """95% Student t interval of the mean of ``values`` (paired differences over seeds): mean ± t·s/√n.
    With few seeds it is wider than the percentile bootstrap, which understates the spread of small samples."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def paired_table(records: list[RunRecord], metric: str, direction: str = "max", reference: str = "mle") -> str:
    """Each algorithm against ``reference`` on ``metric``: mean paired difference, its 95% bootstrap
    interval and the wins (pairs where the algorithm is better in ``direction``). Empty without pairs."""
    diffs = paired_differences(records, metric, reference)
    if not diffs:
        return ""
    rows = []
    for algo, d in diffs.items():
        lo, hi = bootstrap_interval(d)
        t_lo, t_hi = t_interval(d)
        wins = sum(x > 0 if direction == "max" else x < 0 for x in d)
        t_text = f"[{t_lo:+.3f}, {t_hi:+.3f}]" if len(d) > 1 else "—"
        rows.append([algo, len(d), f"{sum(d) / len(d):+.3f}", t_text, f"[{lo:+.3f}, {hi:+.3f}]", f"{wins}/{len(d)}"])
    header = ["algorithm", "pairs", f"Δ{metric} vs {reference}", "95% t CI", "95% bootstrap CI", "wins"]
    better = "higher" if direction == "max" else "lower"
    return (f"Paired by seed (same data, same start) against {reference} ({better} {metric} is better); an interval "
            "that excludes 0 separates the two:\n" + format_table(header, rows))


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain monospace table; floats with 4 significant digits."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def format_records(records: list[RunRecord]) -> str:
    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.metrics})
    header = ["algorithm", "seed", *params, *metrics]
    rows = [[r.algorithm, r.seed, *(r.params.get(k, "") for k in params), *(r.metrics.get(k, "") for k in metrics)]
            for r in records]
    return format_table(header, rows)




__all__ = ["bootstrap_interval", "format_records", "format_table", "paired_differences", "paired_table",
           "t_interval", "t_quantile_975"]
