"""The benchmark runner shared by every suite: fan out runs, time them, write
``results.json`` (the contract of DESIGN.md), ``results.csv``, a printed table and plots."""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import signal
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..algorithms import ALGORITHMS
from ..config import SettingError, check_value, describe
from ..registry import Registry
from ..utils import describe_device


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
    settings_class: type | None = None
    """The dataclass ``--set KEY=VALUE`` overrides."""
    grid_options: tuple[str, ...] = ()
    """Which of the CLI's grid options (``--sizes``, ``--motifs``, ``--masks``, ``--data``) apply."""
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
        try:
            cast[key] = check_value(key, value, hints[key])
        except SettingError:
            raise TypeError(f"setting {key!r} expects {describe(hints[key])}, got {value!r}") from None
    return replace(settings, **cast)


def split_algorithm_settings(settings: dict[str, Any], available: Sequence[str]
                             ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split ``--set`` overrides into the suite's own and per-algorithm ones (``ALGO.FIELD``), checking
    that each algorithm is available and each field is one of its config's or of FitConfig's."""
    from ..algorithms.base import config_fields, config_from_kwargs
    from ..training import FitConfig

    fit_fields = {f.name for f in fields(FitConfig)} - {"device", "seed", "progress", "checkpoint", "log_dir",
                                                         "tensorboard_dir"}
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
    for algo, given in per.items():  # values and ranges checked now, not when the algorithm's turn comes
        cls = ALGORITHMS.get(algo)
        own = config_fields(cls)
        config_from_kwargs(cls, **{k: v for k, v in given.items() if k in own})
        FitConfig(**{"max_steps": 1, **{k: v for k, v in given.items() if k not in own}})
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


# --- crash-safe output -----------------------------------------------------------------------------


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_suite`; the message says how many jobs are saved and how to go on."""


def _walk(obj: Any, leaf: Callable[[float], Any]) -> Any:
    """``obj`` as JSON data: tuples as lists, keys as strings, floats (and numpy or 0-d tensor scalars)
    through ``leaf``, anything else as its ``str``."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return leaf(float(obj))
    if isinstance(obj, dict):
        return {str(k): _walk(v, leaf) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_walk(v, leaf) for v in obj]
    try:
        value = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    return leaf(value)


def strict_json(obj: Any) -> Any:
    """``obj`` as strict JSON data: NaN and ±inf become ``None`` (``null``), which JSON parsers accept."""
    return _walk(obj, lambda x: x if math.isfinite(x) else None)


def _tagged(obj: Any) -> Any:
    """Lossless strict JSON for ``runs.jsonl``: a non-finite float becomes ``{"$float": "nan"}`` (or inf, -inf)."""
    return _walk(obj, lambda x: x if math.isfinite(x) else {"$float": repr(x)})


def _untagged(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.keys() == {"$float"}:
            return float(obj["$float"])
        return {k: _untagged(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untagged(v) for v in obj]
    return obj


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``: a reader,
    or a kill, sees the old file or the new one, never part of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextmanager
def _deferred_interrupt():
    """Hold Ctrl-C while a finished job is saved, so that it is saved whole; re-deliver it after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])
            elif previous in (signal.SIG_DFL, None):
                signal.raise_signal(signal.SIGINT)


def write_results(suite: str, device: torch.device | str, started: str, records: list[RunRecord], out: Path, *,
                  grid: dict[str, Any] | None = None, plots: Sequence[str] | None = None) -> dict:
    """Write ``results.json`` (strict JSON: NaN and ±inf as ``null``) and ``results.csv``, each atomically;
    ``device`` is a torch device or its description, ``grid`` what identifies the run (:func:`bench_grid`),
    ``plots`` the names of the plot files beside them. Return the payload as written."""
    from .. import __version__

    out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "suite": suite,
        "device": device if isinstance(device, str) else describe_device(device),
        "seqrl_version": __version__,
        "started": started,
    }
    if grid is not None:
        payload["grid"] = grid
    payload["runs"] = [asdict(r) for r in records]
    if plots is not None:
        payload["plots"] = list(plots)
    payload = strict_json(payload)
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2, allow_nan=False) + "\n")
    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.metrics})
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["suite", "algorithm", "seed", *params, *metrics])
    for r in records:
        writer.writerow([suite, r.algorithm, r.seed, *(r.params.get(k, "") for k in params),
                         *(r.metrics.get(k, "") for k in metrics)])
    atomic_write_text(out / "results.csv", text.getvalue())
    return payload


def read_results(path: Path) -> dict:
    """A ``results.json`` with its runs as :class:`RunRecord` s (``null`` metrics back to NaN) under "records"."""
    payload = json.loads(Path(path).read_text())
    payload["records"] = [RunRecord(**{**run, "metrics": {k: math.nan if v is None else v
                                                           for k, v in run.get("metrics", {}).items()}})
                          for run in payload.get("runs", [])]
    return payload


def _plot_files(out: Path, name: str) -> list[Path]:
    """The plot and curve files of suite ``name`` in ``out``: those its results.json lists, and its
    ``NAME_*.png`` and ``NAME_curves.json``."""
    found = set(out.glob(f"{name}_*.png")) | set(out.glob(f"{name}_curves.json"))
    try:
        listed = json.loads((out / "results.json").read_text()).get("plots") or []
    except (OSError, ValueError, AttributeError):
        listed = []
    found |= {out / n for n in listed if isinstance(n, str) and n and Path(n).name == n and not n.startswith(".")}
    return sorted(p for p in found if p.is_file())


def write_plots(suite: Suite, name: str, records: list[RunRecord], out: Path) -> list[Path]:
    """``suite.plot`` into a temporary folder, then the suite's previous plots removed and the new ones moved
    beside the results: no plot of another run stays next to new results."""
    import shutil

    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".plots-"))
    try:
        made = [Path(p).name for p in suite.plot(records, tmp)]
        names = list(dict.fromkeys([n for n in made if (tmp / n).is_file()]
                                   + sorted(p.name for p in tmp.iterdir() if p.is_file())))
        for old in _plot_files(out, name):
            old.unlink()
        for n in names:
            os.replace(tmp / n, out / n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / n for n in names]


def bench_grid(name: str, suite: Suite, options: BenchOptions) -> dict[str, Any]:
    """What identifies a suite run (stored in results.json and runs.jsonl as "grid"): a rerun into the same
    folder must have the same to resume it."""
    grid = {"suite": name, "quick": options.quick, "seeds": options.seeds,
            "algos": list(options.algos or suite.default_algos()), "grid": options.grid,
            "settings": options.settings, "algorithm_settings": options.algorithm_settings}
    return json.loads(json.dumps(strict_json(grid), sort_keys=True))


def job_key(grid: dict[str, Any], job: dict[str, Any]) -> str:
    """A job's identity in runs.jsonl: a hash of its suite, job dict, algorithms and settings."""
    ident = {"suite": grid["suite"], "job": job, "quick": grid["quick"], "algos": grid["algos"],
             "settings": grid["settings"], "algorithm_settings": grid["algorithm_settings"]}
    return hashlib.sha256(json.dumps(_tagged(ident), sort_keys=True).encode()).hexdigest()


def _grid_difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "its results.json records no grid"
    return "; ".join(f"{k}: {json.dumps(old.get(k))} there, {json.dumps(new.get(k))} here"
                     for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))


class ResultStore:
    """A suite run's folder: ``runs.jsonl`` (a header line naming the grid, then one line per finished job with
    its records and curves, appended and fsynced), ``results.json``/``results.csv`` (rewritten atomically after
    every job) and the plots (written at the end)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log = out / "runs.jsonl"

    def read(self) -> tuple[dict | None, dict[str, dict]]:
        """(header, finished jobs by key) of runs.jsonl; a torn line (a kill mid-append) is skipped."""
        header: dict | None = None
        done: dict[str, dict] = {}
        if not self.log.is_file():
            return header, done
        for line in self.log.read_bytes().split(b"\n"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("kind") == "header" and header is None:
                header = entry
            elif entry.get("kind") == "job" and isinstance(entry.get("key"), str):
                done[entry["key"]] = entry
        return header, done

    def _previous(self, header: dict | None, done: dict[str, dict]) -> tuple[Any, int]:
        """(grid, finished jobs or runs) of what the folder holds."""
        if header is not None and done:
            return header.get("grid"), len(done)
        try:
            payload = json.loads((self.out / "results.json").read_text())
        except (OSError, ValueError):
            return None, 0
        runs = payload.get("runs") if isinstance(payload, dict) else None
        return (payload.get("grid"), len(runs)) if runs else (None, 0)

    def open(self, name: str, grid: dict[str, Any], started: str, *, total: int, resume: bool
             ) -> tuple[str, dict[str, dict]]:
        """Check the folder against ``grid`` and prepare it; return (started, finished jobs by key), the
        first run's start and its jobs when resuming. A folder holding finished work of another grid, or of
        this grid without ``resume``, is refused (ValueError); one holding none is reused."""
        header, done = self.read()
        old_grid, count = self._previous(header, done)
        if count:
            if old_grid != grid:
                raise ValueError(f"{self.out} holds results of another grid ({_grid_difference(old_grid, grid)}); "
                                 "use another --out")
            if not resume:
                raise ValueError(f"{self.out} already holds {count} finished job(s) of this grid (of {total}); "
                                 "use --resume to finish it, or another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        for leftover in [*self.out.glob(".*.tmp"), *self.out.glob(".plots-*")]:
            if leftover.is_dir():
                import shutil

                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for old in _plot_files(self.out, name):
            old.unlink()
        if resume and done and header is not None and header.get("grid") == grid:
            data = self.log.read_bytes()
            if not data.endswith(b"\n"):  # a torn last line: cut it, so that the next line starts clean
                os.truncate(self.log, data.rfind(b"\n") + 1)
            return header.get("started", started), done
        head = {"kind": "header", "format": 1, "suite": name, "started": started, "grid": grid}
        atomic_write_text(self.log, json.dumps(head, sort_keys=True, allow_nan=False) + "\n")
        return started, {}

    def append(self, key: str, job: dict[str, Any], records: list[RunRecord], curves: list[Any]) -> None:
        entry = {"kind": "job", "key": key, "job": job, "records": [asdict(r) for r in records], "curves": curves}
        data = memoryview((json.dumps(_tagged(entry), allow_nan=False) + "\n").encode())
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)


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
    resume: bool = False,
    executor: Any = None,
    tensorboard: str | Path | None = None,
) -> dict:
    """Run a registered suite and write its results; return the ``results.json`` payload.

    With ``out``, each finished job is appended to ``out/runs.jsonl`` and ``results.json``/``results.csv``
    are rewritten atomically, so that a kill loses at most the jobs under way. An ``out`` holding finished
    jobs is refused unless ``resume`` and the same grid (:func:`bench_grid`): then its finished jobs (records
    and curves) are read back instead of run. Ctrl-C raises :class:`BenchInterrupted` saying what is saved.

    ``executor`` (:mod:`seqrl.bench.executors`) runs the jobs: in this process by default, or in worker
    processes or on Ray; records, curves and files are the same either way (wall times aside). Every
    ``fit`` of a job writes ``out/logs/JOB/NN-ALGORITHM/metrics.csv``, and TensorBoard events under
    ``tensorboard/JOB/NN-ALGORITHM`` when ``tensorboard`` names a folder.
    """
    from .executors import GridJob, InProcessExecutor, JobRunner

    executor = executor if executor is not None else InProcessExecutor()
    suite = SUITES.get(name)()
    available = suite.available_algos()
    if algos:
        unknown = sorted(set(algos) - set(available))
        if unknown:
            raise KeyError(f"suite {name!r} has no algorithms {unknown}; available: {available}")
    plain, per_algorithm = split_algorithm_settings(settings or {}, available)
    if tensorboard is not None:
        from ..tracking import require_tensorboard

        require_tensorboard()
    options = BenchOptions(
        quick=quick,
        seeds=tuple(seeds) if seeds else None,
        algos=tuple(algos) if algos else None,
        device=executor.device(device),
        progress=progress,
        out=Path(out) if out is not None else None,
        grid={k: tuple(v) for k, v in (grid or {}).items()},
        settings=plain,
        algorithm_settings=per_algorithm,
    )
    where = executor.describe(options.device)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    jobs = suite.jobs(options)
    ident = bench_grid(name, suite, options)
    keys = [job_key(ident, job) for job in jobs]
    store = ResultStore(options.out) if options.out is not None else None
    done: dict[str, dict] = {}
    if store is not None:
        started, done = store.open(name, ident, started, total=len(jobs), resume=resume)
        if not done:  # a fresh run: no metrics of an earlier attempt's jobs stay
            import shutil

            shutil.rmtree(store.out / "logs", ignore_errors=True)
    finished: dict[int, tuple[list[RunRecord], list[Any]]] = {}
    for index, key in enumerate(keys):
        entry = done.get(key)
        if entry is not None:  # finished by an earlier run: its records and curves, read back
            finished[index] = ([RunRecord(**r) for r in _untagged(entry["records"])],
                               _untagged(entry.get("curves") or []))
    restored = saved = len(finished)
    pending = [GridJob(i, key, job) for i, (job, key) in enumerate(zip(jobs, keys)) if i not in finished]
    runner = JobRunner(name, type(suite).__module__, options, store.out / "logs" if store is not None else None,
                       Path(tensorboard) if tensorboard is not None else None)

    def in_grid_order() -> list[RunRecord]:
        return [r for i in sorted(finished) for r in finished[i][0]]

    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), initial=restored, desc=f"bench {name}", disable=not progress, dynamic_ncols=True)
    try:
        for outcome in executor.run(runner, pending, suite):
            finished[outcome.index] = (outcome.records, outcome.curves)
            if store is not None:
                with _deferred_interrupt():
                    store.append(outcome.key, outcome.job, outcome.records, outcome.curves)
                    saved += 1
                    write_results(name, where, started, in_grid_order(), store.out, grid=ident)
            bar.update(1)
        bar.close()
        records = in_grid_order()
        if isinstance(getattr(suite, "curves", None), list):  # every job's curves, in grid order
            suite.curves[:] = [c for i in sorted(finished) for c in finished[i][1]]  # type: ignore[attr-defined]
        echo(suite.report(records))
        note = f" ({restored} of {len(jobs)} jobs read back from {store.log})" if restored and store else ""
        echo(f"{len(records)} runs in {time.perf_counter() - t0:.1f} s on {where}{note}")
        if store is None:
            return strict_json({"suite": name, "runs": [asdict(r) for r in records]})
        plots = write_plots(suite, name, records, store.out)
        payload = write_results(name, where, started, records, store.out, grid=ident,
                                plots=[p.name for p in plots])
        for path in plots:
            echo(f"wrote {path}")
        echo(f"wrote {store.out / 'results.json'} and {store.out / 'results.csv'}")
        return payload
    except BenchInterrupted:
        raise
    except KeyboardInterrupt:
        kept = f"saved in {store.out}; rerun with --resume" if store is not None else "finished, none saved (no out)"
        raise BenchInterrupted(f"interrupted: {saved} of {len(jobs)} jobs {kept}") from None
    finally:
        bar.close()
