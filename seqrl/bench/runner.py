"""The benchmark runner shared by every suite: fan out runs, time them, write
``results.json`` (the contract of DESIGN.md), ``results.csv``, a printed table and plots."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..algorithms import ALGORITHMS
from ..registry import Registry
from ..utils import describe_device, resolve_device


@dataclass
class RunRecord:
    """One run: its algorithm, seed, parameters and metrics (metric names are stable)."""

    algorithm: str
    seed: int
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False
    seeds: tuple[int, ...] | None = None
    algos: tuple[str, ...] | None = None
    device: torch.device = torch.device("cpu")
    progress: bool = True
    out: Path | None = None
    grid: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Suite-specific overrides of the grid, e.g. {"sizes": ("500",), "masks": ("1001111",)}."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Overrides of the suite's settings dataclass (``seqrl bench … --set lr=3e-4``)."""
    algorithm_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-algorithm overrides (``--set raml.num_samples=5``): fields of the algorithm's config, or of
    :class:`~seqrl.training.FitConfig` for that algorithm's training (``--set gdcpp.clip_grad_norm=1``)."""

    def for_algorithm(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config overrides, FitConfig overrides) the user gave for algorithm ``name``."""
        from ..algorithms.base import config_fields

        given = self.algorithm_settings.get(name, {})
        own = config_fields(ALGORITHMS.get(name))
        return ({k: v for k, v in given.items() if k in own}, {k: v for k, v in given.items() if k not in own})


class Suite:
    """A benchmark suite: ``jobs`` lists units of work; ``run_job`` turns one into records.

    A suite names no algorithm: it states what it ``offers`` (``"data"``: training references,
    ``"reward"``: a reward to score samples against them, ``"potential"``: an EBM and a proposal), and runs
    every registered algorithm whose :class:`~seqrl.algorithms.base.Requirements` it meets. ``comparison``
    is the metric and direction of the paired comparison with the ``reference`` row.
    """

    name = "suite"
    offers: frozenset[str] = frozenset()
    comparison: tuple[str, str] | None = None
    reference = "mle"

    def accepts(self, cls: Any) -> bool:
        """Whether this suite can run algorithm class ``cls``."""
        req = cls.requires
        wanted = {"data"} if req.data else set()
        wanted |= {"reward"} if req.reward else set()
        wanted |= {"potential"} if req.potential else set()
        if "potential" in self.offers:  # a potential-only suite runs the algorithms that train toward one
            return req.potential and wanted <= self.offers
        return wanted <= self.offers and not req.potential

    def available_algos(self) -> list[str]:
        return [name for name, cls in ALGORITHMS.items() if self.accepts(cls)]

    def default_algos(self) -> list[str]:
        return [name for name, cls in ALGORITHMS.items() if self.accepts(cls) and cls.in_default_bench]

    def jobs(self, options: BenchOptions) -> list[dict[str, Any]]:
        raise NotImplementedError

    def run_job(self, job: dict[str, Any], options: BenchOptions) -> list[RunRecord]:
        raise NotImplementedError

    def table(self, records: list[RunRecord]) -> str:
        return format_records(records)

    def report(self, records: list[RunRecord]) -> str:
        """The suite's table, then the paired comparison with the reference row."""
        text = self.table(records)
        if self.comparison is not None:
            metric, direction = self.comparison
            paired = paired_table(records, metric, direction, self.reference)
            if paired:
                text += "\n\n" + paired
        return text

    def plot(self, records: list[RunRecord], out: Path) -> list[Path]:
        return []


def override_settings(settings: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` with names checked and values checked against each field's type
    (an int is accepted where a float is expected)."""
    if not overrides:
        return settings
    hints = typing.get_type_hints(type(settings))
    unknown = sorted(set(overrides) - {f.name for f in fields(settings)})
    if unknown:
        raise KeyError(f"unknown setting(s) {unknown}; known: {sorted(f.name for f in fields(settings))}")
    cast: dict[str, Any] = {}
    for key, value in overrides.items():
        allowed = typing.get_args(hints[key]) or (hints[key],)
        if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
            value = float(value)
        if not any(value is None if t is type(None) else type(value) is t for t in allowed):
            names = " | ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise TypeError(f"setting {key!r} expects {names}, got {value!r}")
        cast[key] = value
    return replace(settings, **cast)


def split_algorithm_settings(settings: dict[str, Any], available: Sequence[str]
                             ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split ``--set`` overrides into the suite's own and per-algorithm ones (``ALGO.FIELD``), checking
    that each algorithm is available and each field is one of its config's or of FitConfig's."""
    from ..algorithms.base import config_fields
    from ..training import FitConfig

    fit_fields = {f.name for f in fields(FitConfig)} - {"device", "seed", "progress", "checkpoint"}
    plain: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        if "." not in key:
            plain[key] = value
            continue
        algo, field_name = key.split(".", 1)
        if algo not in available:
            raise KeyError(f"--set {key}: no algorithm {algo!r} in this suite; available: {list(available)}")
        known = config_fields(ALGORITHMS.get(algo)) | fit_fields
        if field_name not in known:
            raise KeyError(f"--set {key}: {algo} has no setting {field_name!r}; known: {sorted(known)}")
        per.setdefault(algo, {})[field_name] = value
    return plain, per


SUITES: Registry[Callable[[], Suite]] = Registry("suite", group="seqrl.suites")


def register_suite(name: str):
    return SUITES.register(name)


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


def paired_table(records: list[RunRecord], metric: str, direction: str = "max", reference: str = "mle") -> str:
    """Each algorithm against ``reference`` on ``metric``: mean paired difference, its 95% bootstrap
    interval and the wins (pairs where the algorithm is better in ``direction``). Empty without pairs."""
    diffs = paired_differences(records, metric, reference)
    if not diffs:
        return ""
    rows = []
    for algo, d in diffs.items():
        lo, hi = bootstrap_interval(d)
        wins = sum(x > 0 if direction == "max" else x < 0 for x in d)
        rows.append([algo, len(d), f"{sum(d) / len(d):+.3f}", f"[{lo:+.3f}, {hi:+.3f}]", f"{wins}/{len(d)}"])
    header = ["algorithm", "pairs", f"Δ{metric} vs {reference}", "95% bootstrap CI", "wins"]
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


def write_results(suite: str, device: torch.device | str, started: str, records: list[RunRecord], out: Path) -> dict:
    """Write ``results.json`` and ``results.csv``; ``device`` is a torch device or its description."""
    from .. import __version__

    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "suite": suite,
        "device": device if isinstance(device, str) else describe_device(device),
        "seqrl_version": __version__,
        "started": started,
        "runs": [asdict(r) for r in records],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=float))
    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.metrics})
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["suite", "algorithm", "seed", *params, *metrics])
        for r in records:
            writer.writerow([suite, r.algorithm, r.seed, *(r.params.get(k, "") for k in params),
                             *(r.metrics.get(k, "") for k in metrics)])
    return payload


def run_suite(
    name: str,
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    algos: Sequence[str] | None = None,
    device: str = "auto",
    out: str | Path | None = "runs/bench",
    progress: bool = True,
    grid: dict[str, Sequence[str]] | None = None,
    settings: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run a registered suite and write its results; return the ``results.json`` payload."""
    suite = SUITES.get(name)()
    available = suite.available_algos()
    if algos:
        unknown = sorted(set(algos) - set(available))
        if unknown:
            raise KeyError(f"suite {name!r} has no algorithms {unknown}; available: {available}")
    plain, per_algorithm = split_algorithm_settings(settings or {}, available)
    options = BenchOptions(
        quick=quick,
        seeds=tuple(seeds) if seeds else None,
        algos=tuple(algos) if algos else None,
        device=resolve_device(device),
        progress=progress,
        out=Path(out) if out is not None else None,
        grid={k: tuple(v) for k, v in (grid or {}).items()},
        settings=plain,
        algorithm_settings=per_algorithm,
    )
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    jobs = suite.jobs(options)
    records: list[RunRecord] = []
    t0 = time.perf_counter()
    for job in tqdm(jobs, desc=f"bench {name}", disable=not progress, dynamic_ncols=True):
        records.extend(suite.run_job(job, options))
        if options.out is not None:  # after every job, so that an interrupted run keeps what it finished
            write_results(name, options.device, started, records, options.out)
    echo(suite.report(records))
    echo(f"{len(records)} runs in {time.perf_counter() - t0:.1f} s on {describe_device(options.device)}")
    payload: dict = {"suite": name, "runs": [asdict(r) for r in records]}
    if options.out is not None:
        payload = write_results(name, options.device, started, records, options.out)
        for path in suite.plot(records, options.out):
            echo(f"wrote {path}")
        echo(f"wrote {options.out / 'results.json'} and {options.out / 'results.csv'}")
    return payload
