"""One run over several processes (issue 23, item 6): ``torchrun --nproc_per_node N -m seqrl train …``.

Two gloo processes must leave the weights one process leaves on the same global batch: every statistic read
across the batch (Ẑ, the GDC++ baseline and the KL rule's estimates, leave-one-out baselines, Ziegler's β,
CDPG's Ẑ_x) is the global batch's. tests/ddp_case.py runs the cases, in float64 so that the comparison is
exact up to summation order (in float32 the two differ by ~2e-6 relative after 6 Adam steps: Adam divides
by the gradient's own scale, so the last bits of a near-zero gradient entry reach the weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqrl import distributed, prompts
from seqrl.distributed import World, rank_seed
from seqrl.prompts import PromptSchedule
from seqrl.types import BatchError, SequenceBatch

HERE = Path(__file__).parent
CASES = ("gdcpp", "kl_control", "cdpg", "kl_control_prompts")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_processes_take_the_steps_of_one_process_on_the_global_batch(tmp_path):
    """Then, in the same two processes, ``seqrl train`` as torchrun runs it: data sharded, rank 0 alone writing."""
    out = tmp_path / "run"
    run([sys.executable, str(HERE / "ddp_case.py"), "--out", str(tmp_path / "one"), "--virtual", "2"], tmp_path)
    done = run([*TORCHRUN, str(HERE / "ddp_case.py"), "--out", str(tmp_path / "two"), "--then-train", "mle",
                "--env", "seqrl/Copy-v0", "--epochs", "2", "--batch-size", "8", "--task-set", "train_size=24",
                "--task-set", "valid_size=8", "--task-set", "test_size=8", "--policy-set", "hidden_size=8",
                "--device", "cpu", "--no-progress", "--out", str(out)], tmp_path)
    for case in CASES:
        one = torch.load(tmp_path / "one" / f"{case}.pt")
        two = torch.load(tmp_path / "two" / f"{case}.pt")
        moved = max(float((one["weights"][k] - one["initial"][k]).abs().max()) for k in one["weights"])
        assert moved > 1e-3, f"{case}: training did not move the weights ({moved}): the comparison says nothing"
        for key, weight in one["weights"].items():
            torch.testing.assert_close(two["weights"][key], weight, rtol=1e-6, atol=1e-6 * float(weight.abs().max()),
                                       msg=lambda m, key=key, case=case: f"{case}.{key}: {m}")
        if one["beta"] is not None:
            assert two["beta"] == pytest.approx(one["beta"], rel=1e-9)
        if one["log_z"] is not None:
            assert float(two["log_z"]) == pytest.approx(float(one["log_z"]), rel=1e-9)
        assert two["proposal_updates"] == one["proposal_updates"]
    assert torch.load(tmp_path / "one" / "gdcpp.pt")["proposal_updates"] > 0  # the KL rule's swaps were exercised

    report = json.loads((out / "train.json").read_text())
    assert report["steps"] == 6  # 24 rows, 8 a step (4 on each process), 2 epochs
    assert done.stdout.count('"algorithm": "mle"') == 1  # one report, from rank 0
    assert (out / "policy.pt").is_file() and (out / "state.pt").is_file()
    assert (out / "state.pt.rank1").is_file()  # rank 1's own random streams, for a resume
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 6


def as_rank(monkeypatch, rank: int, size: int) -> None:
    for module in (distributed, prompts):
        monkeypatch.setattr(module, "world", lambda: World(rank, size))


def test_each_rank_takes_its_chunk_of_the_step_prompts(monkeypatch):
    schedule = PromptSchedule(SequenceBatch.from_lists([[3], [4], [3, 3], [4, 4]], pad=0))
    chunks = []
    for rank in (0, 1):
        as_rank(monkeypatch, rank, 2)
        step = schedule.local_step(0, 64)
        assert step.per_prompt == 16
        chunks.append(step.index.tolist())
    assert chunks == [[0, 1], [2, 3]]
    odd = PromptSchedule(SequenceBatch.from_lists([[3], [4], [3, 3]], pad=0))
    with pytest.raises(BatchError, match="prompts per step = 3 does not split evenly over 2 processes"):
        odd.local_step(0, 64)


def test_a_share_that_does_not_split_evenly_is_refused(monkeypatch):
    as_rank(monkeypatch, 0, 2)
    assert distributed.share(64, "samples") == 32
    with pytest.raises(BatchError, match="samples = 63 does not split evenly over 2 processes: use a multiple of 2"):
        distributed.share(63, "samples")


def test_rank_0_keeps_the_run_seed():
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(8)}) == 8
