"""``run_suite``: a registered suite's grid, run through an executor into a result store, then its report.

The pieces: :mod:`seqrl.bench.suite` (what a suite is), :mod:`seqrl.bench.executors` (where jobs run),
:mod:`seqrl.bench.store` (the folder: ``runs.jsonl``, ``results.json``/``csv``, plots) and
:mod:`seqrl.bench.stats` (the paired tables). Stop signals (Ctrl-C, SIGTERM) keep every finished job.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from ..files import locked
from ..interrupts import Interrupted, deferred, signal_of
from .executors import GridJob, InProcessExecutor, JobRunner
from .store import ResultStore, bench_grid, job_key, strict_json, untagged, write_plots, write_results
from .suite import SUITES, BenchOptions, RunRecord, split_algorithm_settings


class BenchInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during :func:`run_suite`; the message says how many jobs are saved and how to go on."""


def _options(name: str, *, quick: bool, seeds: Sequence[int] | None, algos: Sequence[str] | None, device: Any,
             out: str | Path | None, progress: bool | Literal["lines"], grid: dict[str, Sequence[str]] | None,
             settings: dict[str, Any] | None, executor: Any) -> BenchOptions:
    """The run's options, every name and value checked (unknown algorithms, settings, ranges)."""
    suite = SUITES.get(name)()
    available = suite.available_algos()
    if algos:
        unknown = sorted(set(algos) - set(available))
        if unknown:
            raise KeyError(f"suite {name!r} has no algorithms {unknown}; available: {available}")
    plain, per_algorithm = split_algorithm_settings(settings or {}, available)
    return BenchOptions(quick=quick, seeds=tuple(seeds) if seeds else None, algos=tuple(algos) if algos else None,
                        device=executor.device(device), progress=progress,
                        out=Path(out) if out is not None else None,
                        grid={k: tuple(v) for k, v in (grid or {}).items()}, settings=plain,
                        algorithm_settings=per_algorithm)


def run_suite(
    name: str,
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    algos: Sequence[str] | None = None,
    device: str = "auto",
    out: str | Path | None = "runs/bench",
    progress: bool | Literal["lines"] = True,
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
    jobs is refused unless ``resume`` and the same grid (:func:`~seqrl.bench.store.bench_grid`): then its
    finished jobs (records and curves) are read back instead of run. One process at a time per ``out`` (a lock);
    Ctrl-C or SIGTERM raises :class:`BenchInterrupted` saying what is saved.

    ``executor`` (:mod:`seqrl.bench.executors`) runs the jobs: in this process by default, or in worker
    processes or on Ray; records, curves and files are the same either way (wall times aside). Every
    ``fit`` of a job writes ``out/logs/JOB/NN-ALGORITHM/metrics.csv``, and TensorBoard events under
    ``tensorboard/JOB/NN-ALGORITHM`` when ``tensorboard`` names a folder. ``progress``: True, a bar; ``"lines"``,
    one line per finished job on stderr; False, neither.
    """
    executor = executor if executor is not None else InProcessExecutor()
    options = _options(name, quick=quick, seeds=seeds, algos=algos, device=device, out=out, progress=progress,
                       grid=grid, settings=settings, executor=executor)
    if tensorboard is not None:
        from ..tracking import require_tensorboard

        require_tensorboard()
    suite = SUITES.get(name)()
    jobs = suite.jobs(options)  # every value checked here, before anything is written
    with locked(options.out):
        return _run(name, suite, jobs, options, executor, echo=echo, resume=resume, tensorboard=tensorboard)


def _read_back(keys: list[str], done: dict[str, dict]) -> dict[int, tuple[list[RunRecord], list[Any]]]:
    """The records and curves of the jobs an earlier run of this folder finished, by their place in the grid."""
    finished: dict[int, tuple[list[RunRecord], list[Any]]] = {}
    for index, key in enumerate(keys):
        entry = done.get(key)
        if entry is not None:
            finished[index] = ([RunRecord(**r) for r in untagged(entry["records"])],
                               untagged(entry.get("curves") or []))
    return finished


def _job_line(name: str, outcome: Any, count: int, total: int, seconds: float) -> None:
    fields = ", ".join(f"{k}={v}" for k, v in outcome.job.items() if isinstance(v, (int, float, str)))
    print(f"bench {name}: job {count}/{total} done ({fields}) at {seconds:.0f} s", file=sys.stderr, flush=True)


def _finish(name: str, suite: Any, finished: dict[int, tuple[list[RunRecord], list[Any]]], store: Any, where: str,
            started: str, ident: dict[str, Any], note: str, seconds: float, echo: Callable[[str], None]) -> dict:
    """The report, the plots and the final results files."""
    records = [r for i in sorted(finished) for r in finished[i][0]]
    if isinstance(getattr(suite, "curves", None), list):  # every job's curves, in grid order
        suite.curves[:] = [c for i in sorted(finished) for c in finished[i][1]]
    echo(suite.report(records))
    echo(f"{len(records)} runs in {seconds:.1f} s on {where}{note}")
    if store is None:
        return strict_json({"suite": name, "runs": [asdict(r) for r in records]})
    plots = write_plots(suite, name, records, store.out)
    payload = write_results(name, where, started, records, store.out, grid=ident, plots=[p.name for p in plots])
    for path in plots:
        echo(f"wrote {path}")
    echo(f"wrote {store.out / 'results.json'} and {store.out / 'results.csv'}")
    return payload


def _run(name: str, suite: Any, jobs: list[dict[str, Any]], options: BenchOptions, executor: Any, *,
         echo: Callable[[str], None], resume: bool, tensorboard: str | Path | None) -> dict:
    where = executor.describe(options.device)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ident = bench_grid(name, suite, options)
    keys = [job_key(ident, job) for job in jobs]
    store = ResultStore(options.out) if options.out is not None else None
    done: dict[str, dict] = {}
    if store is not None:
        started, done = store.open(name, ident, started, total=len(jobs), resume=resume)
        store.start(name)
    finished = _read_back(keys, done)
    restored = saved = len(finished)
    pending = [GridJob(i, key, job) for i, (job, key) in enumerate(zip(jobs, keys)) if i not in finished]
    runner = JobRunner(name, type(suite).__module__, options, store.out / "logs" if store is not None else None,
                       Path(tensorboard) if tensorboard is not None else None)
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), initial=restored, desc=f"bench {name}", disable=options.progress is not True,
               dynamic_ncols=True)
    try:
        for outcome in executor.run(runner, pending, suite):
            finished[outcome.index] = (outcome.records, outcome.curves)
            if store is not None:
                with deferred():  # a stop signal waits until the job is saved whole
                    store.append(outcome.key, outcome.job, outcome.records, outcome.curves)
                    saved += 1
                    write_results(name, where, started, [r for i in sorted(finished) for r in finished[i][0]],
                                  store.out, grid=ident)
            bar.update(1)
            if options.progress == "lines":
                _job_line(name, outcome, len(finished), len(jobs), time.perf_counter() - t0)
        bar.close()
        note = f" ({restored} of {len(jobs)} jobs read back from {store.log})" if restored and store else ""
        return _finish(name, suite, finished, store, where, started, ident, note, time.perf_counter() - t0, echo)
    except BenchInterrupted:
        raise
    except KeyboardInterrupt as err:
        signum = signal_of(err)
        what = "interrupted" if signum == 2 else "terminated"
        kept = f"saved in {store.out}; rerun with --resume" if store is not None else "finished, none saved (no out)"
        raise BenchInterrupted(f"{what}: {saved} of {len(jobs)} jobs {kept}", signum) from None
    finally:
        bar.close()


__all__ = ["BenchInterrupted", "run_suite"]
