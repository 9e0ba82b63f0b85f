"""``seqrl report DIR``: a suite run's tables and plots rebuilt from ``DIR/results.json`` (and the curves
in ``DIR/runs.jsonl``), without running anything; and :func:`seed_band`, the plotting helper that the
suites' plots share (seeds as one line and a shaded band, not one line each)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_text
from ..registry import names_only
from .store import ResultStore, job_key, read_json, read_results, untagged, write_plots
from .suite import SUITES, BenchOptions, RunRecord, Suite

BAND_NOTE = "line: mean over seeds; band: min–max"


def seed_band(ax: Any, series: Sequence[Sequence[tuple[Any, Any]]], *, label: str, color: Any = None,
              linestyle: str = "-", marker: str | None = None) -> Any:
    """Plot several runs of one configuration (one series of (x, y) per seed) as the mean line with a shaded
    min–max band. Points are matched on equal x (evaluation steps, |D|); each x averages the runs that reached
    it, and non-finite y are left out. Return the line (None when no point is finite)."""
    by_x: dict[float, list[float]] = {}
    for points in series:
        for x, y in points:
            if x is not None and y is not None and math.isfinite(float(y)):
                by_x.setdefault(float(x), []).append(float(y))
    if not by_x:
        return None
    xs = sorted(by_x)
    runs = sum(1 for points in series if any(y is not None and math.isfinite(float(y)) for _, y in points))
    line, = ax.plot(xs, [statistics.fmean(by_x[x]) for x in xs], linestyle=linestyle, marker=marker, color=color,
                    label=f"{label} ({runs} seeds)" if runs > 1 else label)
    if runs > 1:
        ax.fill_between(xs, [min(by_x[x]) for x in xs], [max(by_x[x]) for x in xs], color=line.get_color(),
                        alpha=0.2, linewidth=0)
    return line


def options_from_grid(grid: dict[str, Any]) -> BenchOptions:
    """The BenchOptions of a run, from the "grid" its results.json records (:func:`~seqrl.bench.store.bench_grid`)."""
    return BenchOptions(quick=bool(grid.get("quick")), seeds=tuple(grid["seeds"]) if grid.get("seeds") else None,
                        algos=tuple(grid["algos"]) if grid.get("algos") else None, device=torch.device("cpu"),
                        progress=False, grid={k: tuple(v) for k, v in (grid.get("grid") or {}).items()},
                        settings=dict(grid.get("settings") or {}),
                        algorithm_settings={k: dict(v) for k, v in (grid.get("algorithm_settings") or {}).items()})


def _prepare(suite: Suite, name: str, grid: Any, echo: Callable[[str], None]) -> list[dict[str, Any]] | None:
    """The run's jobs, by the suite from the grid results.json records (which also gives the suite the
    settings it ran with, for its tables); None for a merged or foreign grid."""
    if not (isinstance(grid, dict) and grid.get("suite") == name):
        return None
    try:
        return suite.jobs(options_from_grid(grid))
    except (KeyError, ValueError, TypeError) as err:
        echo(f"note: suite {name!r} does not accept the recorded grid now ({err}); its default settings are used")
        return None


def _curves(folder: Path, name: str, grid: Any, jobs: list[dict[str, Any]] | None) -> list[Any] | None:
    """The run's curves in grid order: from runs.jsonl when it belongs to this grid, else from NAME_curves.json."""
    if jobs is not None:
        header, done = ResultStore(folder).read()
        if header is not None and header.get("grid") == grid and done:
            keys = [job_key(grid, job) for job in jobs]
            return [c for key in keys if key in done for c in untagged(done[key].get("curves") or [])]
    path = folder / f"{name}_curves.json"
    if path.is_file():
        return read_json(path, "curves file")
    return None


def rebuild_report(folder: str | Path, *, out: str | Path | None = None,
                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Print the suite's table and paired table for ``folder/results.json`` and write them to ``report.txt``,
    and redraw the suite's plots, in ``out`` (default: ``folder``). Return {"records", "text", "plots"}."""
    with names_only():  # a name in the file picks a registered suite, reward or algorithm, never a module
        return _rebuild(Path(folder), out, echo)


def _rebuild(folder: Path, out: str | Path | None, echo: Callable[[str], None]) -> dict[str, Any]:
    path = folder / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json in {folder} (the output folder of `seqrl bench`)")
    payload = read_results(path)
    name = payload.get("suite")
    if not isinstance(name, str):
        raise ValueError(f"{path} names no suite")
    if name not in SUITES:
        raise ValueError(f"{path} names suite {name!r}, which is not registered here (known: "
                         f"{', '.join(SUITES.names())}); report reads registered suites only")
    suite = SUITES.get(name)()
    records: list[RunRecord] = payload["records"]
    if not records:
        raise ValueError(f"{path} holds no runs")
    grid = payload.get("grid")
    curves = _curves(folder, name, grid, _prepare(suite, name, grid, echo))
    if curves is not None and isinstance(getattr(suite, "curves", None), list):
        suite.curves[:] = curves  # type: ignore[attr-defined]
    text = suite.report(records)
    if not text.strip():  # e.g. a results.json whose "suite" was changed: its runs are not this suite's
        raise ValueError(f"{path}: suite {name!r} finds none of its runs among the file's {len(records)} "
                         f"record(s); the file names the wrong suite or is damaged")
    echo(text)
    target = Path(out) if out is not None else folder
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / "report.txt", text + "\n", "report")
    plots = write_plots(suite, name, records, target)
    for plot in plots:
        echo(f"wrote {plot}")
    echo(f"wrote {target / 'report.txt'}")
    return {"records": records, "text": text, "plots": plots}


__all__ = ["BAND_NOTE", "options_from_grid", "rebuild_report", "seed_band"]
