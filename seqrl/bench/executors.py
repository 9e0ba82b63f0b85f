"""Where a benchmark grid's jobs run: in this process (the default), in local worker processes
(``seqrl bench … --workers N``) or as Ray tasks on a Ray cluster (``--ray [ADDRESS]``).

A grid is a set of independent jobs (:meth:`~seqrl.bench.suite.Suite.jobs`). Every executor runs the
pending ones through the same :class:`JobRunner` and hands each :class:`JobOutcome` (records and curves)
back to :func:`~seqrl.bench.runner.run_suite` as it finishes; there it is appended to ``runs.jsonl`` and
``results.json`` is rewritten with the finished jobs in grid order, so the files, ``--resume`` and the
tables are those of an in-process run. Each job seeds itself (the suites call ``seed_everything``), and a
worker builds its own suite for each job, so a job's records do not depend on where it ran or what ran
before it: they are equal to the in-process run's, wall times aside, given the same torch thread count
(CPU reductions may round differently on another number of threads).

Ray: plain Ray tasks (``ray.remote`` with ``num_cpus``/``num_gpus``, fractional GPUs allowed), not Ray
Tune trials. A grid has no search, scheduler or stopping rule for Tune to add; Tune would keep a second
experiment folder with its own resume (``Tuner.restore``) beside ``runs.jsonl`` and pass results through
its loggers, while ``ray.wait`` hands each finished job to the one ResultStore directly.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..interrupts import ignore_stop_signals
from ..tracking import log_runs, safe_name
from ..utils import describe_device, resolve_device
from .suite import SUITES, BenchOptions, RunRecord, Suite

RAY_HINT = "--ray needs Ray: pip install 'seqrl[ray]'"


@dataclass(frozen=True)
class GridJob:
    """One job of a grid: its place in the grid, its key in runs.jsonl and the suite's job dict."""

    index: int
    key: str
    job: dict[str, Any]

    @property
    def folder(self) -> str:
        """The job's log folder name: its scalar fields, then the start of its key (unique per grid)."""
        fields = ",".join(f"{k}={v}" for k, v in self.job.items()
                          if v is None or isinstance(v, (bool, int, float, str)))
        return f"{safe_name(fields, 60)}-{self.key[:8]}" if fields else f"job-{self.key[:8]}"


@dataclass
class JobOutcome:
    index: int
    key: str
    job: dict[str, Any]
    records: list[RunRecord]
    curves: list[Any]


@dataclass(frozen=True)
class JobRunner:
    """Runs one job of suite ``suite_name`` with ``options`` wherever it is called: it builds the suite
    (importing ``suite_module`` first when the name is not registered there, e.g. in a fresh worker),
    and logs every ``fit`` of the job under ``log_root/JOB/`` (metrics.csv) and ``tensorboard_root/JOB/``."""

    suite_name: str
    suite_module: str
    options: BenchOptions
    log_root: Path | None = None
    tensorboard_root: Path | None = None

    def build_suite(self) -> Suite:
        if self.suite_name not in SUITES and self.suite_module not in ("__main__", "__mp_main__"):
            try:
                importlib.import_module(self.suite_module)
            except ImportError as err:
                raise ImportError(f"suite {self.suite_name!r} is registered in module {self.suite_module!r}, "
                                  f"which this worker cannot import ({err}): put it on the path or declare it "
                                  "in the seqrl.suites entry-point group") from None
        suite = SUITES.get(self.suite_name)()
        suite.jobs(self.options)  # the suite checks and keeps its settings, as in the driver
        return suite

    def __call__(self, job: GridJob, suite: Suite | None = None) -> JobOutcome:
        suite = suite if suite is not None else self.build_suite()
        csv_dir = self.log_root / job.folder if self.log_root is not None else None
        tb_dir = self.tensorboard_root / job.folder if self.tensorboard_root is not None else None
        for folder in (csv_dir, tb_dir):  # an unfinished earlier attempt leaves no stale fits
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        curves = getattr(suite, "curves", None)
        before = len(curves) if isinstance(curves, list) else 0
        with log_runs(csv_dir, tb_dir):
            records = suite.run_job(job.job, self.options)
        new_curves = list(curves[before:]) if isinstance(curves, list) else []
        return JobOutcome(job.index, job.key, job.job, list(records), new_curves)


class Executor:
    """Runs a grid's pending jobs; :meth:`run` yields each outcome as its job finishes (in any order)."""

    def device(self, requested: str | torch.device) -> torch.device:
        """The device the jobs will use, as ``--device`` asked for it."""
        return resolve_device(requested)

    def describe(self, device: torch.device) -> str:
        """The ``device`` field of results.json."""
        return describe_device(device)

    def run(self, runner: JobRunner, jobs: Sequence[GridJob], suite: Suite) -> Iterator[JobOutcome]:
        raise NotImplementedError


class InProcessExecutor(Executor):
    """The jobs one after another in this process, on the driver's suite (the default)."""

    def run(self, runner: JobRunner, jobs: Sequence[GridJob], suite: Suite) -> Iterator[JobOutcome]:
        for job in jobs:
            yield runner(job, suite)


def _start_worker(threads: int) -> None:
    ignore_stop_signals()  # the driver stops its workers (a signal to the whole group must not break the pool)
    torch.set_num_threads(threads)


def _run_in_worker(runner: JobRunner, job: GridJob) -> JobOutcome:
    return runner(job)


class WorkerExecutor(Executor):
    """``workers`` local processes (``spawn``: no state inherited from the driver), each with ``threads`` torch
    threads (default 1, as seqrl's commands: workers × threads beyond the cores only makes them wait). A script
    that runs a grid on
    workers needs an ``if __name__ == "__main__":`` guard: spawn imports the script in every worker."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer ≥ 1, got {workers!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads per worker must be an integer ≥ 1, got {threads!r}")
        self.workers = workers
        self.threads = threads or 1

    def run(self, runner: JobRunner, jobs: Sequence[GridJob], suite: Suite) -> Iterator[JobOutcome]:
        if not jobs:
            return
        runner = replace(runner, options=replace(runner.options, progress=False))  # no bars from workers
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=min(self.workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(self.threads,))
        try:
            futures = [pool.submit(_run_in_worker, runner, job) for job in jobs]
            yield from _as_finished(concurrent.futures.as_completed(futures), _worker_result,
                                    lambda: [f.cancel() for f in futures])
        except BaseException:
            _kill_workers(pool)  # Ctrl-C/SIGTERM or a failure: the jobs under way are not waited for
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _kill_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """SIGKILL the pool's processes (they ignore stop signals; an unfinished job is simply not saved)."""
    for process in list(getattr(pool, "_processes", {}).values()):
        try:
            process.kill()
        except (OSError, AttributeError):
            pass


def _worker_result(future: concurrent.futures.Future) -> JobOutcome:
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool as err:
        raise RuntimeError("a worker process died: killed, out of memory, or started from a script without an "
                           "`if __name__ == '__main__':` guard (spawn runs the script again in each worker)") from err


def _as_finished(finished: Any, result: Any, cancel: Any) -> Iterator[JobOutcome]:
    """Outcomes as jobs finish; after a job fails, the jobs not started are cancelled, those under way are
    still collected (and saved by the caller), then the first failure is raised."""
    error: BaseException | None = None
    for item in finished:
        try:
            outcome = result(item)
        except concurrent.futures.CancelledError:
            continue
        except Exception as err:  # noqa: BLE001  (re-raised below, after the running jobs are in)
            if error is None:
                error = err
                cancel()
            continue
        yield outcome
    if error is not None:
        raise error


def _run_on_ray(runner: JobRunner, job: GridJob, threads: int, gpu: bool) -> JobOutcome:
    torch.set_num_threads(threads)
    if gpu:  # Ray hides every GPU but this task's share: it is cuda:0 here, whatever index the driver named
        runner = replace(runner, options=replace(runner.options, device=torch.device("cuda")))
    return runner(job)


class RayExecutor(Executor):
    """Each job a Ray task with ``cpus_per_run`` CPUs (and as many torch threads) and ``gpus_per_run``
    GPUs (a fraction shares a GPU: 0.25 puts four jobs on each). ``address`` as ``ray.init`` takes it
    (None: a running local cluster, else a new local instance; "auto"; "HOST:PORT"; "ray://HOST:10001");
    seqrl must be installed on the cluster's nodes. A Ray instance this executor starts, it stops."""

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        if not cpus_per_run > 0:
            raise ValueError(f"cpus per run must be > 0, got {cpus_per_run!r}")
        if not gpus_per_run >= 0:
            raise ValueError(f"GPUs per run must be ≥ 0, got {gpus_per_run!r}")
        if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
            raise ValueError(f"GPUs per run above 1 must be a whole number, got {gpus_per_run!r}")
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, gpus_per_run
        self.init_kwargs = init_kwargs or {}

    def device(self, requested: str | torch.device) -> torch.device:
        """Resolved on the cluster, not here: with GPUs per run, CUDA (the driver may have none)."""
        name = str(requested).strip().lower()
        if self.gpus_per_run > 0:
            if name not in ("auto", "cuda") and not name.startswith("cuda:"):
                raise ValueError(f"--gpus-per-run {self.gpus_per_run:g} with --device {requested}: "
                                 "use --device auto or cuda")
            return torch.device("cuda")
        if name == "auto":
            return torch.device("cpu")
        if name.startswith("cuda"):
            raise ValueError(f"--device {requested} on Ray needs GPUs per run (e.g. --gpus-per-run 0.25): "
                             "a Ray task without one sees no GPU")
        return resolve_device(requested)

    def describe(self, device: torch.device) -> str:
        share = f", {self.gpus_per_run:g} GPU" if self.gpus_per_run else ""
        return f"{device.type} on Ray ({self.address or 'local'}; per run {self.cpus_per_run:g} CPU{share})"

    def run(self, runner: JobRunner, jobs: Sequence[GridJob], suite: Suite) -> Iterator[JobOutcome]:
        if not jobs:
            return
        try:
            import ray
        except ImportError:
            raise ImportError(RAY_HINT) from None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **self.init_kwargs)
        runner = replace(runner, options=replace(runner.options, progress=False))
        task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0)(_run_on_ray)
        threads = max(1, int(self.cpus_per_run))
        refs = [task.remote(runner, job, threads, self.gpus_per_run > 0) for job in jobs]
        try:
            yield from _as_finished(_ray_finished(ray, refs), ray.get,
                                    lambda: [ray.cancel(r) for r in refs])
        finally:
            for ref in refs:  # on Ctrl-C or a failure: nothing left running on the cluster
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001  (finished tasks cannot be cancelled: nothing to do)
                    pass
            if started_here:
                ray.shutdown()


def _ray_finished(ray: Any, refs: list[Any]) -> Iterator[Any]:
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        yield from ready


def make_executor(workers: int | None = None, ray: bool = False, ray_address: str | None = None,
                  cpus_per_run: float = 1.0, gpus_per_run: float = 0.0, threads: int | None = None) -> Executor:
    """The executor the CLI's ``--workers N`` / ``--ray [ADDRESS]`` / ``--gpus-per-run`` name."""
    if ray and workers is not None:
        raise ValueError("--workers and --ray exclude each other (Ray schedules its own workers)")
    if not ray and gpus_per_run:
        raise ValueError("--gpus-per-run applies to --ray only")
    if ray:
        return RayExecutor(ray_address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    if workers is not None and workers > 1:
        return WorkerExecutor(workers, threads)
    return InProcessExecutor()


__all__ = ["Executor", "GridJob", "InProcessExecutor", "JobOutcome", "JobRunner", "RayExecutor", "WorkerExecutor",
           "make_executor"]
