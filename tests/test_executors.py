"""One grid, three executors (seqrl.bench.executors): in-process, 2 local worker processes and Ray tasks on a
local Ray instance give equal results.json records, curves and per-step metrics (wall times aside); a resumed
Ray run redoes no finished job; a failed job stops the grid after the running ones are saved."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
from pathlib import Path

import pytest
import torch

from seqrl.bench.executors import (
    GridJob,
    InProcessExecutor,
    RayExecutor,
    WorkerExecutor,
    _as_finished,
    make_executor,
)
from seqrl.bench.runner import run_suite
from seqrl.cli import main

# Two gam jobs (r by MLE, Training-1, dpg_off with curves), tiny enough for seconds per job.
TINY = dict(hidden_size=8, num_layers=1, max_epochs=3, test_size=100, snis_samples=500, log_z_samples=1000,
            kl_samples=200, motif_samples=100, distill_samples=100, training1_steps=5, dpg_steps=4, eval_every=2,
            episodes_per_step=50, patience=2)
GRID = dict(seeds=[1, 2], algos=["mle", "dpg_off"], settings=TINY, device="cpu", progress=False,
            grid={"sizes": ["50"], "masks": ["1001111"], "motifs": ["1000101000101"]})


def bench(out: Path, executor=None, **kwargs) -> dict:
    return run_suite("gam", out=out, executor=executor, echo=lambda _: None, **GRID, **kwargs)


def without_wall(payload: dict) -> list[dict]:
    return [{**r, "metrics": {k: v for k, v in r["metrics"].items() if not k.startswith("wall_s")}}
            for r in payload["runs"]]


def logs(out: Path) -> dict[str, str]:
    """Every per-step metrics file of a run, by its path under out/logs."""
    return {str(p.relative_to(out / "logs")): p.read_text() for p in sorted((out / "logs").rglob("metrics.csv"))}


def assert_same_run(out: Path, reference: Path) -> None:
    ours, theirs = (json.loads((d / "results.json").read_text()) for d in (out, reference))
    assert without_wall(ours) == without_wall(theirs)
    assert ours["grid"] == theirs["grid"] and ours["plots"] == theirs["plots"]
    assert (out / "gam_curves.json").read_text() == (reference / "gam_curves.json").read_text()
    assert logs(out) == logs(reference) and len(logs(out)) == 4  # 2 jobs × (r, dpg_off)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> Path:
    torch.set_num_threads(1)  # as every worker below: CPU reductions round alike on equal thread counts
    out = tmp_path_factory.mktemp("inproc")
    payload = bench(out)
    assert len(payload["runs"]) == 4 and payload["device"] == "cpu"
    return out


def test_two_worker_processes_give_the_in_process_results(in_process, tmp_path):
    bench(tmp_path, WorkerExecutor(2, threads=1))
    assert_same_run(tmp_path, in_process)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_tasks_give_the_in_process_results_and_resume_redoes_nothing_finished(in_process, local_ray, tmp_path):
    payload = bench(tmp_path, RayExecutor())
    assert payload["device"] == "cpu on Ray (local; per run 1 CPU)"
    assert_same_run(tmp_path, in_process)
    # As if killed after the first job: runs.jsonl keeps it, and its logs are the only ones left.
    lines = (tmp_path / "runs.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 3
    kept = json.loads(lines[1])
    (tmp_path / "runs.jsonl").write_text("".join(lines[:2]))
    shutil.rmtree(tmp_path / "logs")
    bench(tmp_path, RayExecutor(), resume=True)
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert without_wall(resumed) == without_wall(json.loads((in_process / "results.json").read_text()))
    ran = {name.split("/")[0] for name in logs(tmp_path)}  # only the unfinished job ran again
    assert len(ran) == 1 and GridJob(0, kept["key"], kept["job"]).folder not in ran
    assert logs(tmp_path) == {k: v for k, v in logs(in_process).items() if k.split("/")[0] in ran}
    assert (tmp_path / "gam_curves.json").read_text() == (in_process / "gam_curves.json").read_text()


def test_a_failed_job_is_raised_after_the_running_ones_are_collected():
    done, failing = concurrent.futures.Future(), concurrent.futures.Future()
    done.set_result("outcome")
    failing.set_exception(RuntimeError("job 1 failed"))
    cancelled = []
    got = []
    with pytest.raises(RuntimeError, match="job 1 failed"):
        for outcome in _as_finished([failing, done], lambda f: f.result(), lambda: cancelled.append(True)):
            got.append(outcome)
    assert got == ["outcome"] and cancelled == [True]


def test_executor_options_are_checked():
    assert isinstance(make_executor(), InProcessExecutor) and isinstance(make_executor(workers=1), InProcessExecutor)
    assert make_executor(workers=3).workers == 3
    with pytest.raises(ValueError, match="exclude each other"):
        make_executor(workers=2, ray=True)
    with pytest.raises(ValueError, match="--gpus-per-run applies to --ray only"):
        make_executor(gpus_per_run=0.5)
    with pytest.raises(ValueError, match="a Ray task without one sees no GPU"):
        RayExecutor().device("cuda")
    assert RayExecutor(gpus_per_run=0.25).device("auto") == torch.device("cuda")  # resolved on the cluster
    assert RayExecutor().device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="whole number"):
        RayExecutor(gpus_per_run=1.5)


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2", "--ray"], "--workers and --ray exclude each other"),
    (["--gpus-per-run", "0.5"], "--gpus-per-run applies to --ray only"),
    (["--cpus-per-run", "2"], "--cpus-per-run applies to --ray only"),
])
def test_bench_cli_rejects_conflicting_executor_options(argv, message, tmp_path, capsys):
    assert main(["bench", "gam", "--quick", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()  # refused before anything is written
