"""A benchmark run's folder: ``runs.jsonl`` (the append-only log of finished jobs that ``--resume`` reads back),
``results.json`` / ``results.csv`` (the contract scripts read, rewritten atomically after every job) and the plots.

Everything here is written atomically with the user's umask (:mod:`seqrl.files`) and read strictly: a corrupt
``results.json`` or a damaged line in the middle of ``runs.jsonl`` is one error naming the file and where;
only a torn *last* line (a kill mid-append) is expected and dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write_text, file_fingerprint
from ..utils import describe_device

if TYPE_CHECKING:
    import torch

    from .suite import BenchOptions, RunRecord, Suite


class ResultsFileError(ValueError):
    """A results.json or runs.jsonl that cannot be read back; the message names the file and the place."""


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


def tagged(obj: Any) -> Any:
    """Lossless strict JSON for ``runs.jsonl``: a non-finite float becomes ``{"$float": "nan"}`` (or inf, -inf)."""
    return _walk(obj, lambda x: x if math.isfinite(x) else {"$float": repr(x)})


def untagged(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.keys() == {"$float"}:
            return float(obj["$float"])
        return {k: untagged(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [untagged(v) for v in obj]
    return obj


def write_results(suite: str, device: torch.device | str, started: str, records: list[RunRecord], out: Path, *,
                  grid: dict[str, Any] | None = None, plots: Sequence[str] | None = None) -> dict:
    """Write ``results.json`` (strict JSON: NaN and ±inf as ``null``) and ``results.csv``, each atomically;
    ``device`` is a torch device or its description, ``grid`` what identifies the run (:func:`bench_grid`),
    ``plots`` the names of the plot files beside them. Return the payload as written."""
    from .._version import __version__

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
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2, allow_nan=False) + "\n", "results")
    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.metrics})
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["suite", "algorithm", "seed", *params, *metrics])
    for r in records:
        writer.writerow([suite, r.algorithm, r.seed, *(r.params.get(k, "") for k in params),
                         *(r.metrics.get(k, "") for k in metrics)])
    atomic_write_text(out / "results.csv", text.getvalue(), "results")
    return payload


def read_json(path: Path, what: str) -> Any:
    """A JSON file, or one :class:`ResultsFileError` naming it and the line/column where it breaks."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ResultsFileError(f"{path}: not valid JSON at line {err.lineno} column {err.colno} "
                               f"(offset {err.pos}): {err.msg}; is this {what} truncated or edited?") from None
    except UnicodeDecodeError as err:
        raise ResultsFileError(f"{path}: not UTF-8 text at offset {err.start}") from None
    except RecursionError:
        raise ResultsFileError(f"{path}: nested deeper than any {what} is (refused before reading it all)") from None


def read_results(path: Path) -> dict:
    """A ``results.json`` with its runs as :class:`RunRecord` s (``null`` metrics back to NaN) under "records";
    a file that is not one is a :class:`ResultsFileError` naming it."""
    from .suite import RunRecord

    payload = read_json(Path(path), "results file")
    if not isinstance(payload, dict) or not isinstance(payload.get("runs", []), list):
        raise ResultsFileError(f"{path} is not a seqrl results file (no list of runs)")
    records = []
    for i, run in enumerate(payload.get("runs", [])):
        try:
            metrics = {k: math.nan if v is None else float(v) for k, v in (run.get("metrics") or {}).items()}
            records.append(RunRecord(algorithm=str(run["algorithm"]), seed=int(run["seed"]),
                                     params=dict(run.get("params") or {}), metrics=metrics))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ResultsFileError(f"{path}: run {i} is not a run record ({type(err).__name__}: {err})") from None
    payload["records"] = records
    return payload


PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _plot_files(out: Path, name: str) -> list[Path]:
    """The plot and curve files of suite ``name`` in ``out``: its ``NAME_*.png`` and ``NAME_curves.json``, and
    the images its results.json lists (only images: a name in a file never makes seqrl delete anything else)."""
    found = set(out.glob(f"{name}_*.png")) | set(out.glob(f"{name}_curves.json"))
    try:
        listed = json.loads((out / "results.json").read_text()).get("plots") or []
    except (OSError, ValueError, AttributeError, RecursionError):
        listed = []
    found |= {out / n for n in listed if isinstance(n, str) and n and Path(n).name == n and not n.startswith(".")
              and n.lower().endswith(PLOT_SUFFIXES)}
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


def write_plots(suite: Suite, name: str, records: list[RunRecord], out: Path) -> list[Path]:
    """``suite.plot`` into a temporary folder, then the suite's previous plots removed and the new ones moved
    beside the results: no plot of another run stays next to new results."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".plots-"))
    try:
        made = [Path(p).name for p in suite.plot(records, tmp)]
        names = list(dict.fromkeys([n for n in made if (tmp / n).is_file()]
                                   + sorted(p.name for p in tmp.iterdir() if p.is_file())))
        mode = 0o666 & ~_umask()
        for old in _plot_files(out, name):
            old.unlink()
        for n in names:
            os.chmod(tmp / n, mode)
            os.replace(tmp / n, out / n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / n for n in names]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def bench_grid(name: str, suite: Suite, options: BenchOptions) -> dict[str, Any]:
    """What identifies a suite run (stored in results.json and runs.jsonl as "grid"): a rerun into the same
    folder must have the same to resume it: the suite, grid and settings, the seqrl version, and the sha256
    of each data file's contents (so that other data under the same path is not resumed onto)."""
    from .._version import __version__

    data = {path: file_fingerprint(path) for path in options.grid.get("data", ()) if Path(path).is_file()}
    grid = {"suite": name, "quick": options.quick, "seeds": options.seeds,
            "algos": list(options.algos or suite.default_algos()), "grid": options.grid,
            "settings": options.settings, "algorithm_settings": options.algorithm_settings,
            "seqrl_version": __version__, "data_sha256": data}
    return json.loads(json.dumps(strict_json(grid), sort_keys=True))


def job_key(grid: dict[str, Any], job: dict[str, Any]) -> str:
    """A job's identity in runs.jsonl: a hash of its suite, job dict, algorithms, settings, data and version."""
    ident = {"suite": grid["suite"], "job": job, "quick": grid["quick"], "algos": grid["algos"],
             "settings": grid["settings"], "algorithm_settings": grid["algorithm_settings"],
             "seqrl_version": grid.get("seqrl_version"), "data_sha256": grid.get("data_sha256")}
    return hashlib.sha256(json.dumps(tagged(ident), sort_keys=True).encode()).hexdigest()


def _grid_difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "its results.json records no grid"
    return "; ".join(f"{k}: {json.dumps(old.get(k))} there, {json.dumps(new.get(k))} here"
                     for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))


class ResultStore:
    """A suite run's folder: ``runs.jsonl`` (a header line naming the grid, then one line per finished job with
    its records and curves, appended and fsynced), ``results.json``/``results.csv`` (rewritten atomically after
    every job) and the plots (written at the end). Nothing is written before the first job finishes: a run
    refused or failing before then leaves the folder as it was."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log = out / "runs.jsonl"
        self._header: dict[str, Any] | None = None
        """The header to write before the first job (None: the log already has this run's header)."""

    def read(self) -> tuple[dict | None, dict[str, dict]]:
        """(header, finished jobs by key) of runs.jsonl. A torn last line (a kill mid-append) is dropped; any
        other line that is not a record is a :class:`ResultsFileError` naming its line number. A job record
        without runs is not a finished job."""
        header: dict | None = None
        done: dict[str, dict] = {}
        if not self.log.is_file():
            return header, done
        data = self.log.read_bytes()
        lines = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError):
                if number == len(lines) and not data.endswith(b"\n"):
                    continue  # the last append was cut short by a kill: that job is simply not finished
                raise ResultsFileError(f"{self.log}: line {number} is not a JSON record (corrupt or edited); "
                                       "move the file away to start the run anew") from None
            if not isinstance(entry, dict):
                raise ResultsFileError(f"{self.log}: line {number} is not a record")
            if entry.get("kind") == "header" and header is None:
                header = entry
            elif entry.get("kind") == "job" and isinstance(entry.get("key"), str):
                if isinstance(entry.get("records"), list) and entry["records"]:
                    done[entry["key"]] = entry
        return header, done

    def _previous(self, header: dict | None, done: dict[str, dict]) -> tuple[Any, int]:
        """(grid, finished jobs or runs) of what the folder holds."""
        if header is not None and done:
            return header.get("grid"), len(done)
        path = self.out / "results.json"
        if not path.is_file():
            return None, 0
        payload = read_json(path, "results file")
        runs = payload.get("runs") if isinstance(payload, dict) else None
        return (payload.get("grid"), len(runs)) if runs else (None, 0)

    def open(self, name: str, grid: dict[str, Any], started: str, *, total: int, resume: bool
             ) -> tuple[str, dict[str, dict]]:
        """Check the folder against ``grid``; return (started, finished jobs by key), the first run's start and
        its jobs when resuming. A folder holding finished work of another grid, or of this grid without
        ``resume``, is refused (ValueError naming the difference); one holding none is reused."""
        header, done = self.read() if self.out.is_dir() else (None, {})
        old_grid, count = self._previous(header, done) if self.out.is_dir() else (None, 0)
        if count:
            if old_grid != grid:
                raise ValueError(f"{self.out} holds results of another grid ({_grid_difference(old_grid, grid)}); "
                                 "use another --out")
            if not resume:
                raise ValueError(f"{self.out} already holds {count} finished job(s) of this grid (of {total}); "
                                 "use --resume to finish it, or another --out")
        if resume and done and header is not None and header.get("grid") == grid:
            self._clean(name)
            data = self.log.read_bytes()
            if not data.endswith(b"\n"):  # a torn last line: cut it, so that the next line starts clean
                os.truncate(self.log, data.rfind(b"\n") + 1)
            return header.get("started", started), done
        self._header = {"kind": "header", "format": 1, "suite": name, "started": started, "grid": grid}
        return started, {}

    def _clean(self, name: str) -> None:
        """Leftovers of a killed run of this folder (its lock is ours now): temporaries and stale plots."""
        for leftover in [*self.out.glob(".*.tmp"), *self.out.glob(".plots-*")]:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for old in _plot_files(self.out, name):
            old.unlink()

    def start(self, name: str) -> None:
        """Before the first write of a fresh run: clear the folder's old run (plots, logs) and write the header."""
        if self._header is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._clean(name)
        shutil.rmtree(self.out / "logs", ignore_errors=True)
        atomic_write_text(self.log, json.dumps(self._header, sort_keys=True, allow_nan=False) + "\n", "run log")
        self._header = None

    def append(self, key: str, job: dict[str, Any], records: list[RunRecord], curves: list[Any]) -> None:
        entry = {"kind": "job", "key": key, "job": job, "records": [asdict(r) for r in records], "curves": curves}
        data = memoryview((json.dumps(tagged(entry), allow_nan=False) + "\n").encode())
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["ResultStore", "ResultsFileError", "bench_grid", "job_key", "read_json", "read_results", "strict_json",
           "tagged", "untagged", "write_plots", "write_results"]
