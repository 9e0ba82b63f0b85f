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


class Suite:
    """A benchmark suite: ``jobs`` lists units of work; ``run_job`` turns one into records."""

    name = "suite"
    default_algos: tuple[str, ...] = ()
    available_algos: tuple[str, ...] = ()

    def jobs(self, options: BenchOptions) -> list[dict[str, Any]]:
        raise NotImplementedError

    def run_job(self, job: dict[str, Any], options: BenchOptions) -> list[RunRecord]:
        raise NotImplementedError

    def table(self, records: list[RunRecord]) -> str:
        return format_records(records)

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


SUITES: Registry[Callable[[], Suite]] = Registry("suite", group="seqrl.suites")


def register_suite(name: str):
    return SUITES.register(name)


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
    if algos:
        unknown = sorted(set(algos) - set(suite.available_algos))
        if unknown:
            raise KeyError(f"suite {name!r} has no algorithms {unknown}; available: {list(suite.available_algos)}")
    options = BenchOptions(
        quick=quick,
        seeds=tuple(seeds) if seeds else None,
        algos=tuple(algos) if algos else None,
        device=resolve_device(device),
        progress=progress,
        out=Path(out) if out is not None else None,
        grid={k: tuple(v) for k, v in (grid or {}).items()},
        settings=dict(settings or {}),
    )
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    jobs = suite.jobs(options)
    records: list[RunRecord] = []
    t0 = time.perf_counter()
    for job in tqdm(jobs, desc=f"bench {name}", disable=not progress, dynamic_ncols=True):
        records.extend(suite.run_job(job, options))
        if options.out is not None:  # after every job, so that an interrupted run keeps what it finished
            write_results(name, options.device, started, records, options.out)
    echo(suite.table(records))
    echo(f"{len(records)} runs in {time.perf_counter() - t0:.1f} s on {describe_device(options.device)}")
    payload: dict = {"suite": name, "runs": [asdict(r) for r in records]}
    if options.out is not None:
        payload = write_results(name, options.device, started, records, options.out)
        for path in suite.plot(records, options.out):
            echo(f"wrote {path}")
        echo(f"wrote {options.out / 'results.json'} and {options.out / 'results.csv'}")
    return payload
