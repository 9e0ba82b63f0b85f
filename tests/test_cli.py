"""The command line, by subprocess, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest


def seqrl(*args, cwd=None, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "seqrl", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def test_list_json():
    out = seqrl("list", "--json")
    assert out.returncode == 0, out.stderr
    cat = json.loads(out.stdout)
    assert {"algorithms", "envs", "rewards"} <= set(cat)
    assert "mle" in cat["algorithms"] and "seqrl/Motif-v0" in cat["envs"] and "bleu" in cat["rewards"]


def test_unknown_names_fail_with_the_known_ones():
    out = seqrl("train", "ppo", "--env", "seqrl/Copy-v0")
    assert out.returncode == 2 and "unknown algorithm 'ppo'; known:" in out.stderr
    out = seqrl("bench", "atari")
    assert out.returncode == 2 and "unknown suite 'atari'; known: gam" in out.stderr


def test_train_copy_writes_checkpoint(tmp_path):
    out = seqrl("train", "mle", "--env", "seqrl/Copy-v0", "--epochs", "1", "--device", "cpu", "--no-progress",
                "--task-set", "train_size=64", "--policy-set", "hidden_size=16", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["steps"] == 1 and "test_bleu_greedy" in report
    assert (tmp_path / "policy.pt").exists()


@pytest.mark.slow
def test_bench_gam_quick_writes_results(tmp_path):
    out = seqrl("bench", "gam", "--quick", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "gam"))
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "gam" / "results.json").read_text())
    assert results["suite"] == "gam" and results["device"] == "cpu"
    runs = results["runs"]
    assert {r["params"]["dataset_size"] for r in runs} == {500, 5000}
    for run in runs:
        m = run["metrics"]
        assert m["h_true"] == pytest.approx(14.6633, abs=1e-4)
        assert m["ce_r"] > m["h_true"] - 0.05  # no model beats the true entropy (up to sampling noise)
        assert 0.0 <= m["motif_freq_r"] <= 1.0 and m["wall_s"] > 0
    assert (tmp_path / "gam" / "results.csv").exists() and (tmp_path / "gam" / "gam_ce_vs_D.png").exists()
