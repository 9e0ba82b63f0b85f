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


def test_bench_rejects_bad_grid_before_training(tmp_path):
    out = seqrl("bench", "gam", "--quick", "--masks", "Mv10011", "--out", str(tmp_path))
    assert out.returncode == 2 and "malformed feature mask 'Mv10011'" in out.stderr
    out = seqrl("bench", "gam", "--quick", "--motifs", "10a1", "--out", str(tmp_path))
    assert out.returncode == 2 and "binary string" in out.stderr
    out = seqrl("bench", "gam", "--quick", "--algos", "ppo", "--out", str(tmp_path))
    assert out.returncode == 2 and "no algorithms ['ppo']" in out.stderr


@pytest.mark.slow
def test_bench_gam_quick_writes_results(tmp_path):
    """The quick GAM suite end to end by subprocess, on its smallest |D| (the rest of the grid
    is the same code at other sizes; the full quick grid is the README's first command)."""
    out = seqrl("bench", "gam", "--quick", "--sizes", "500", "--device", "cpu", "--no-progress",
                "--out", str(tmp_path / "gam"))
    assert out.returncode == 0, out.stderr
    assert "Table 1 of [DPG] with dpg = dpg_off" in out.stdout
    results = json.loads((tmp_path / "gam" / "results.json").read_text())
    assert results["suite"] == "gam" and results["device"] == "cpu"
    runs = {r["algorithm"]: r for r in results["runs"]}
    assert set(runs) == {"mle", "distill", "dpg_off", "gdcpp"}
    for run in runs.values():
        m = run["metrics"]
        assert run["params"]["dataset_size"] == 500 and run["seed"] == 1234
        assert m["h_true"] == pytest.approx(14.6633, abs=1e-4)
        assert m["ce_test"] > m["h_true"] - 0.1  # nothing beats the true entropy (up to sampling noise)
        assert 0.0 <= m["motif_freq"] <= 1.0 and m["wall_s"] > 0
    gam = runs["dpg_off"]["metrics"]
    # Training-1 gives a GAM much closer to p_true than r (small-data regime of [DPG] Table 1).
    assert gam["ce_plambda"] < gam["ce_r"]
    assert runs["distill"]["metrics"]["ce_test"] < runs["mle"]["metrics"]["ce_test"]
    for name in ("results.csv", "gam_ce_vs_D.png", "gam_kl_curves.png", "gam_curves.json"):
        assert (tmp_path / "gam" / name).exists()


def test_bench_set_rejects_unknown_settings(tmp_path):
    out = seqrl("bench", "gam", "--quick", "--set", "dpg_lrr=1e-3", "--out", str(tmp_path))
    assert out.returncode == 2 and "unknown setting(s) ['dpg_lrr']" in out.stderr and "dpg_lr" in out.stderr
    out = seqrl("bench", "seq2seq", "--quick", "--set", "train_size=many", "--out", str(tmp_path))
    assert out.returncode == 2 and "setting 'train_size' expects int" in out.stderr


def test_bench_seq2seq_with_settings_writes_the_table(tmp_path):
    """The seq2seq suite end to end on a tiny task set from the command line."""
    out = seqrl("bench", "seq2seq", "--quick", "--seeds", "0,1", "--algos", "mle,raml", "--device", "cpu",
                "--no-progress", "--set", "train_size=48", "--set", "valid_size=16", "--set", "test_size=16",
                "--set", "mle_epochs=2", "--set", "finetune_epochs=1", "--set", "hidden_size=16",
                "--out", str(tmp_path / "s2s"))
    assert out.returncode == 0, out.stderr
    assert "Test set, beam 5, mean ± std over seeds" in out.stdout
    results = json.loads((tmp_path / "s2s" / "results.json").read_text())
    runs = results["runs"]
    assert sorted({(r["algorithm"], r["seed"]) for r in runs}) == [
        (a, s) for a in ("mle", "mle_pretrained", "raml") for s in (0, 1)]
    for run in runs:
        assert run["params"]["train_size"] == 48
        assert 0.0 <= run["metrics"]["bleu"] <= 100.0 and 0.0 <= run["metrics"]["rougeL"] <= 100.0
    assert (tmp_path / "s2s" / "seq2seq_valid_bleu.png").exists()


def test_bench_seq2seq_scratch_protocol_trains_the_objectives_from_random_init(tmp_path):
    """Under protocol=scratch, RAML gets the pretraining's budget (2 epochs × 2 steps) from a random
    initialization and MIXER the fine-tuning's (1 epoch) from the MLE policy; no mle_pretrained row."""
    out = seqrl("bench", "seq2seq", "--quick", "--seeds", "0", "--algos", "mle,raml,mixer", "--device", "cpu",
                "--no-progress", "--set", "train_size=48", "--set", "valid_size=16", "--set", "test_size=16",
                "--set", "mle_epochs=2", "--set", "finetune_epochs=1", "--set", "hidden_size=16",
                "--set", "patience=100", "--set", "protocol=scratch", "--out", str(tmp_path / "s2s"))
    assert out.returncode == 0, out.stderr
    assert "exposure drop (pp)" in out.stdout
    runs = {r["algorithm"]: r for r in json.loads((tmp_path / "s2s" / "results.json").read_text())["runs"]}
    assert sorted(runs) == ["mixer", "mle", "raml"]
    assert {r["params"]["protocol"] for r in runs.values()} == {"scratch"}
    assert runs["mle"]["metrics"]["steps"] == runs["raml"]["metrics"]["steps"] == 4
    assert runs["mixer"]["metrics"]["steps"] == 2
    for run in runs.values():
        assert -100.0 <= run["metrics"]["exposure_drop"] <= 100.0
    assert runs["mle"]["params"]["scratch_monitor"] == "valid_ce"
    out = seqrl("bench", "seq2seq", "--quick", "--seeds", "0", "--algos", "mle", "--set", "protocol=bogus",
                "--set", "train_size=48", "--out", str(tmp_path / "bad"))
    assert out.returncode != 0 and "unknown protocol 'bogus'" in out.stderr


@pytest.mark.parametrize("monitor, pick", [("valid_ce", min), ("valid_bleu", max)])
def test_bench_seq2seq_scratch_monitor_picks_the_returned_checkpoint(tmp_path, monitor, pick):
    """From scratch, the MLE row is the checkpoint of the first evaluation best on ``scratch_monitor``."""
    out = seqrl("bench", "seq2seq", "--quick", "--seeds", "0", "--algos", "mle", "--device", "cpu", "--no-progress",
                "--set", "train_size=64", "--set", "valid_size=16", "--set", "test_size=8", "--set", "mle_epochs=6",
                "--set", "hidden_size=16", "--set", "lr=0.01", "--set", "patience=100", "--set", "protocol=scratch",
                "--set", f"scratch_monitor={monitor}", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["params"]["scratch_monitor"] == monitor and run["metrics"]["steps"] == 12
    (curve,) = json.loads((tmp_path / "seq2seq_curves.json").read_text())
    values = [p[monitor] for p in curve["points"]]
    assert run["metrics"]["best_step"] == curve["points"][values.index(pick(values))]["step"]
    out = seqrl("bench", "seq2seq", "--quick", "--seeds", "0", "--algos", "mle", "--set", "protocol=scratch",
                "--set", "scratch_monitor=valid_rouge", "--set", "train_size=48", "--out", str(tmp_path / "bad"))
    assert out.returncode != 0 and "unknown scratch_monitor 'valid_rouge'" in out.stderr


def test_seq2seq_interpolation_reward_overrides_only_interpolation():
    from dataclasses import replace

    from seqrl.bench.seq2seq import QUICK, algorithm_kwargs
    from seqrl.envs.tasks import ToyTranslationTask

    task = ToyTranslationTask(train_size=8, valid_size=2, test_size=2)
    hamming = replace(QUICK, interpolation_reward="hamming")
    assert algorithm_kwargs("interpolation", hamming, task, 1)["reward"] == "hamming"
    assert algorithm_kwargs("raml", hamming, task, 1)["reward"] == "bleu"
    assert algorithm_kwargs("interpolation", QUICK, task, 1)["reward"] == "bleu"


def test_merge_results_joins_runs_and_keeps_the_chosen_algorithms(tmp_path):
    """benchmarks/merge_results.py: one table over runs split by seed, ``--algos`` drops the other rows."""
    from pathlib import Path

    from seqrl.bench.runner import RunRecord, write_results

    metrics = {m: 1.0 for m in ("bleu", "rouge1", "rouge2", "rougeL", "exposure_drop", "wall_s")}
    for seed in (0, 1):
        records = [RunRecord(a, seed, {"task": "toy"}, dict(metrics, bleu=10.0 * (seed + 1)))
                   for a in ("mle", "raml", "interpolation")]
        write_results("seq2seq", "cpu", f"2026-01-0{seed + 1}", records, tmp_path / f"s{seed}")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "merge_results.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "s0"), str(tmp_path / "s1"), "--algos",
                          "mle,raml", "--out", str(tmp_path / "merged")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert sorted((r["algorithm"], r["seed"]) for r in merged["runs"]) == [("mle", 0), ("mle", 1), ("raml", 0),
                                                                          ("raml", 1)]
    assert merged["started"] == "2026-01-01"
    assert "15.00 ± 7.07" in out.stdout  # BLEU 10 and 20 over the two seeds
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "s0"), "--algos", "spg", "--out",
                          str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "no runs of ['spg']" in out.stderr
