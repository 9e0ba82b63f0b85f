"""Crash-safe bench output and ``--resume`` (issue 13): atomic strict-JSON results, the append-only
``runs.jsonl``, refusing a rerun of another grid, no stale plots, SIGKILL and Ctrl-C mid-run.

The suite here is a throwaway one (``reltest``) whose jobs train nothing: records and curves are functions
of the job, and a job may wait for a gate file, so that the subprocess tests kill the bench at exact points
without depending on the machine's speed."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import seqrl
from seqrl.bench.runner import BenchInterrupted, run_suite
from seqrl.bench.store import write_results
from seqrl.bench.suite import SUITES

SUITE_SOURCE = '''
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from seqrl.bench.suite import RunRecord, Suite, register_suite

CALLS = []      # indices of the jobs run in this process
INTERRUPT_AT = None  # a job index at which run_job raises KeyboardInterrupt (in-process Ctrl-C)


def _gate(index):
    """With RELTEST_GATE set, job ``index`` waits until that file holds a number above ``index``."""
    gate = os.environ.get("RELTEST_GATE")
    if not gate:
        return
    for _ in range(30000):  # 3000 s at most: the test side gives the go
        try:
            if int(Path(gate).read_text() or 0) > index:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("gate never opened")


@dataclass(frozen=True)
class RelTestSettings:
    scale: float = 1.0


@register_suite("reltest")
class RelTestSuite(Suite):
    name = "reltest"
    settings_class = RelTestSettings

    def __init__(self):
        self.curves = []

    def available_algos(self):
        return ["a", "b"]

    def default_algos(self):
        return ["a", "b"]

    def jobs(self, options):
        seeds = options.seeds or (0, 1)
        sizes = [int(s) for s in options.grid.get("sizes", ("3", "5"))]
        return [{"index": i, "seed": s, "size": n} for i, (s, n) in enumerate((s, n) for s in seeds for n in sizes)]

    def run_job(self, job, options):
        if INTERRUPT_AT == job["index"]:
            raise KeyboardInterrupt
        _gate(job["index"])
        CALLS.append(job["index"])
        scale = float(options.settings.get("scale", 1.0))
        records = []
        for algo in options.algos or self.default_algos():
            value = scale * (job["seed"] * 100 + job["size"]) + (0.5 if algo == "b" else 0.0)
            # wall_s: a count, not a clock; it differs between runs as a wall time would.
            metrics = {"score": value / 3, "odd": math.nan if job["size"] == 3 else math.inf,
                       "wall_s": float(len(CALLS))}
            records.append(RunRecord(algo, job["seed"], {"size": job["size"], "shape": (1, 2)}, metrics))
            self.curves.append({"algorithm": algo, "seed": job["seed"],
                                "points": [{"step": 1, "v": value}, {"step": 2, "v": math.nan}]})
        return records

    def plot(self, records, out):
        plot = out / "reltest_plot.png"
        plot.write_text(str(len(records)))
        curves = out / "reltest_curves.json"
        curves.write_text(json.dumps(self.curves))
        return [plot, curves]
'''


def strict_loads(text: str):
    """json.loads that fails on NaN/Infinity (Python's json accepts them; strict JSON does not)."""
    def bad(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=bad)


def without_wall(payload: dict) -> list[dict]:
    return [{**r, "metrics": {k: v for k, v in r["metrics"].items() if k != "wall_s"}} for r in payload["runs"]]


@pytest.fixture
def suite_module(tmp_path):
    """The reltest suite, registered for one test (and removed after)."""
    path = tmp_path / "reltest_suite.py"
    path.write_text(SUITE_SOURCE)
    spec = importlib.util.spec_from_file_location("reltest_suite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        SUITES.unregister("reltest")


def bench(out, **kwargs):
    return run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None, **kwargs)


def test_non_finite_metrics_are_null_and_every_file_is_strict_json(suite_module, tmp_path):
    payload = bench(tmp_path / "o")
    text = (tmp_path / "o" / "results.json").read_text()
    results = strict_loads(text)
    assert results == payload
    assert [r["metrics"]["odd"] for r in results["runs"]] == [None] * 8  # NaN and inf alike
    assert results["grid"] == {"suite": "reltest", "quick": False, "seeds": None, "algos": ["a", "b"], "grid": {},
                               "settings": {}, "algorithm_settings": {}, "data_sha256": {},
                               "seqrl_version": seqrl.__version__}
    assert results["plots"] == ["reltest_plot.png", "reltest_curves.json"]
    lines = (tmp_path / "o" / "runs.jsonl").read_text().splitlines()
    header, *entries = [strict_loads(line) for line in lines]
    assert header["kind"] == "header" and header["grid"] == results["grid"] and header["started"] == results["started"]
    assert len(entries) == 4 and all(e["kind"] == "job" and len(e["records"]) == 2 for e in entries)
    assert entries[0]["records"][0]["metrics"]["odd"] == {"$float": "nan"}  # lossless, for --resume
    assert [e["job"]["index"] for e in entries] == [0, 1, 2, 3] and len(entries[0]["curves"]) == 2
    assert [p.name for p in (tmp_path / "o").glob(".*")] == [".seqrl.lock"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_results(suite_module, tmp_path, monkeypatch):
    from seqrl import files
    from seqrl.bench.suite import RunRecord

    out = tmp_path / "o"
    old = [RunRecord("a", 0, {}, {"score": 1.0})]
    write_results("reltest", "cpu", "t0", old, out)
    before = (out / "results.json").read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_results("reltest", "cpu", "t1", old * 2, out)
    assert (out / "results.json").read_text() == before
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json"]


def test_resume_skips_finished_jobs_and_restores_their_records_and_curves(suite_module, tmp_path):
    full = bench(tmp_path / "full")
    full_curves = (tmp_path / "full" / "reltest_curves.json").read_text()
    suite_module.CALLS.clear()
    suite_module.INTERRUPT_AT = 2
    with pytest.raises(BenchInterrupted) as err:
        bench(tmp_path / "cut")
    out = tmp_path / "cut"
    assert str(err.value) == f"interrupted: 2 of 4 jobs saved in {out}; rerun with --resume"
    first = strict_loads((out / "results.json").read_text())
    assert without_wall(first) == without_wall(full)[:4]  # the two finished jobs
    assert not (out / "reltest_plot.png").exists()
    with (out / "runs.jsonl").open("a") as handle:  # a kill in the middle of an append
        handle.write('{"kind": "job", "key": "abc", "reco')
    suite_module.INTERRUPT_AT = None
    suite_module.CALLS.clear()
    resumed = bench(out, resume=True)
    assert suite_module.CALLS == [2, 3]
    assert without_wall(resumed) == without_wall(full)
    assert {k: v for k, v in resumed.items() if k not in ("runs", "started")} == \
        {k: v for k, v in full.items() if k not in ("runs", "started")}
    assert resumed["started"] == first["started"]
    assert (out / "reltest_curves.json").read_text() == full_curves  # curves of the jobs read back, in order
    assert strict_loads((out / "results.json").read_text()) == resumed
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(strict_loads(line) for line in lines)  # the torn line was cut
    suite_module.CALLS.clear()
    again = bench(out, resume=True)  # all finished: nothing runs, same results
    assert suite_module.CALLS == [] and again == resumed


def test_ctrl_c_while_a_job_is_saved_saves_it_whole_then_stops(suite_module, tmp_path, monkeypatch):
    from seqrl.bench import runner

    append = runner.ResultStore.append

    def append_interrupted(self, *args):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives in the middle of saving job 0
        for _ in range(100):  # let the interpreter run its handler here (it runs between bytecodes)
            time.sleep(0)
        append(self, *args)

    monkeypatch.setattr(runner.ResultStore, "append", append_interrupted)
    with pytest.raises(BenchInterrupted, match="interrupted: 1 of 4 jobs saved"):
        bench(tmp_path / "o")
    assert suite_module.CALLS == [0]
    assert len(strict_loads((tmp_path / "o" / "results.json").read_text())["runs"]) == 2
    assert len((tmp_path / "o" / "runs.jsonl").read_text().splitlines()) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_rerun_into_the_same_out_refuses_and_names_what_differs(suite_module, tmp_path, capsys):
    from seqrl.cli import main

    out = tmp_path / "o"
    bench(out, settings={"scale": 2.0})
    with pytest.raises(ValueError, match=r"already holds 4 finished job\(s\) of this grid .*use --resume"):
        bench(out, settings={"scale": 2.0})
    with pytest.raises(ValueError, match=r"holds results of another grid \(settings: \{\"scale\": 2.0\} there, "
                                         r"\{\"scale\": 3.0\} here\); use another --out"):
        bench(out, settings={"scale": 3.0}, resume=True)
    before = (out / "results.json").read_text()
    capsys.readouterr()
    assert main(["bench", "reltest", "--quick", "--set", "scale=2.0", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "quick: false there, true here" in err
    assert main(["bench", "reltest", "--seeds", "4", "--set", "scale=2.0", "--out", str(out), "--no-progress",
                 "--device", "cpu", "--resume"]) == 2
    assert "seeds: null there, [4] here" in capsys.readouterr().err
    assert (out / "results.json").read_text() == before  # a refused run touches nothing


def test_a_fresh_run_leaves_no_stale_plots(suite_module, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    for name in ("reltest_old.png", "reltest_curves.json", "notes.txt", ".results.json.x1.tmp"):
        (out / name).write_text("old")
    # a results.json's "plots" names images to replace, never other files (a planted list once deleted them)
    (out / "results.json").write_text(json.dumps({"suite": "reltest", "runs": [],
                                                  "plots": ["custom.svg", "notes.txt", "keep.pt"]}))
    (out / "custom.svg").write_text("old")
    (out / "keep.pt").write_text("old")
    bench(out, seeds=[0], grid={"sizes": ["5"]})
    names = sorted(p.name for p in out.iterdir() if p.name != ".seqrl.lock")
    assert names == ["keep.pt", "notes.txt", "reltest_curves.json", "reltest_plot.png", "results.csv",
                     "results.json", "runs.jsonl"]
    assert (out / "reltest_curves.json").read_text() != "old"


# --- by subprocess, as a user runs it ---------------------------------------------------------------


def start_bench(tmp_path, out, *args, gate):
    """``seqrl bench reltest`` in a subprocess (the suite registered by a ``-c`` script), its jobs gated."""
    # Ctrl-C as from a terminal even when pytest itself runs in the background, where the shell starts it
    # (and so this child) with SIGINT ignored.
    script = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
              f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import reltest_suite; "
              "from seqrl.cli import main; sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", RELTEST_GATE=str(gate))
    return subprocess.Popen([sys.executable, "-c", script, "bench", "reltest", "--device", "cpu", "--no-progress",
                             "--out", str(out), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def wait_for_jobs(proc, out: Path, count: int) -> dict:
    """Poll (bounded by count, not by a machine-dependent timeout) until ``out`` holds ``count`` finished jobs
    in runs.jsonl and in results.json; every read of results.json must be strict JSON."""
    for _ in range(30000):
        assert proc.poll() is None, proc.communicate()
        log = out / "runs.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) - 1 >= count and (out / "results.json").exists():
            results = strict_loads((out / "results.json").read_text())
            if len(results["runs"]) >= 2 * count:
                return results
        time.sleep(0.1)
    raise AssertionError(f"{out} never held {count} jobs")


def test_sigkill_mid_run_keeps_every_finished_job_and_resume_completes_it(suite_module, tmp_path):
    full = bench(tmp_path / "full")
    out, gate = tmp_path / "o", tmp_path / "gate"
    for kill_after in (1, 2):  # killed while job kill_after waits: jobs 0 … kill_after-1 are finished
        gate.write_text(str(kill_after))
        proc = start_bench(tmp_path, out, *(["--resume"] if kill_after > 1 else []), gate=gate)
        wait_for_jobs(proc, out, kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        results = strict_loads((out / "results.json").read_text())
        assert without_wall(results) == without_wall(full)[:2 * kill_after]
    gate.write_text("100")
    proc = start_bench(tmp_path, out, "--resume", gate=gate)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "2 of 4 jobs read back" in stdout
    results = strict_loads((out / "results.json").read_text())
    assert without_wall(results) == without_wall(full)
    assert (out / "reltest_curves.json").read_text() == (tmp_path / "full" / "reltest_curves.json").read_text()


def test_ctrl_c_saves_finished_jobs_and_exits_130_with_one_line(suite_module, tmp_path):
    out, gate = tmp_path / "o", tmp_path / "gate"
    gate.write_text("1")
    proc = start_bench(tmp_path, out, gate=gate)
    wait_for_jobs(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 130
    assert stderr == f"seqrl: interrupted: 1 of 4 jobs saved in {out}; rerun with --resume\n"
    assert "Traceback" not in stdout + stderr
    assert len(strict_loads((out / "results.json").read_text())["runs"]) == 2
    gate.write_text("100")
    proc = start_bench(tmp_path, out, "--resume", gate=gate)
    _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert len(strict_loads((out / "results.json").read_text())["runs"]) == 8
