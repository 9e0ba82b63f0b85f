"""The command line, by subprocess, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest


def seqrl(*args, cwd=None):
    """No timeout: how long a command takes depends on the machine and its load, not on seqrl.
    One torch thread: these models are tiny, and two threads on a loaded 2-core machine wait on
    each other (a 2-seed seq2seq run took 4.5 min of wall time for 81 s of CPU)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "seqrl", *args], capture_output=True, text=True, cwd=cwd, env=env)


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
    assert out.returncode == 2 and "unknown suite 'atari'; known: control, gam, seq2seq" in out.stderr


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


def test_bench_gam_r_only_writes_results(tmp_path):
    """The GAM suite end to end by subprocess on a tiny r alone (``--algos mle``: no Training-1/2,
    whose rejection sampling from an untrained r has no bounded cost); the whole quick job is
    test_bench_gam_quick_writes_results (``-m slow``)."""
    out = seqrl("bench", "gam", "--quick", "--sizes", "500", "--algos", "mle", "--device", "cpu", "--no-progress",
                "--set", "hidden_size=16", "--set", "num_layers=1", "--set", "max_epochs=2", "--set", "test_size=500",
                "--set", "motif_samples=200", "--out", str(tmp_path / "gam"))
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "gam" / "results.json").read_text())
    assert results["suite"] == "gam" and results["device"] == "cpu"
    (run,) = results["runs"]
    m = run["metrics"]
    assert run["algorithm"] == "mle" and run["params"]["dataset_size"] == 500 and run["seed"] == 1234
    assert m["h_true"] == pytest.approx(14.6633, abs=1e-4)
    assert m["ce_test"] == m["ce_r"] > m["h_true"] - 0.1  # nothing beats the true entropy
    assert 0.0 <= m["motif_freq"] <= 1.0 and m["wall_s"] > 0
    for name in ("results.csv", "gam_ce_vs_D.png"):
        assert (tmp_path / "gam" / name).exists()


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
    assert out.returncode == 2 and "unknown setting 'dpg_lrr'" in out.stderr and "dpg_lr" in out.stderr
    out = seqrl("bench", "seq2seq", "--quick", "--set", "train_size=many", "--out", str(tmp_path))
    assert out.returncode == 2 and "train_size: expected int, got 'many'" in out.stderr


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
    initialization and MIXER the fine-tuning's (1 epoch) from the MLE policy, beside its equal-budget control
    mle_continued (MLE from the same policy, the same budget); no mle_pretrained row."""
    out = seqrl("bench", "seq2seq", "--quick", "--seeds", "0", "--algos", "mle,raml,mixer", "--device", "cpu",
                "--no-progress", "--set", "train_size=48", "--set", "valid_size=16", "--set", "test_size=16",
                "--set", "mle_epochs=2", "--set", "finetune_epochs=1", "--set", "hidden_size=16",
                "--set", "patience=100", "--set", "protocol=scratch", "--out", str(tmp_path / "s2s"))
    assert out.returncode == 0, out.stderr
    assert "exposure drop (pp)" in out.stdout
    runs = {r["algorithm"]: r for r in json.loads((tmp_path / "s2s" / "results.json").read_text())["runs"]}
    assert sorted(runs) == ["mixer", "mle", "mle_continued", "raml"]
    assert {r["params"]["protocol"] for r in runs.values()} == {"scratch"}
    assert runs["mle"]["metrics"]["steps"] == runs["raml"]["metrics"]["steps"] == 4
    assert runs["mixer"]["metrics"]["steps"] == runs["mle_continued"]["metrics"]["steps"] == 2
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


def test_algorithm_settings_reach_only_their_algorithm():
    """``--set interpolation.reward=hamming`` configures interpolation alone; unknown names fail early."""
    from seqrl.bench.suite import BenchOptions, split_algorithm_settings

    available = ["interpolation", "raml", "gdcpp"]
    plain, per = split_algorithm_settings({"interpolation.reward": "hamming", "gdcpp.clip_grad_norm": 1.0,
                                           "gdcpp.patience": 3, "lr": 0.1}, available)
    assert plain == {"lr": 0.1}
    options = BenchOptions(algorithm_settings=per)
    assert options.for_algorithm("interpolation") == ({"reward": "hamming"}, {})
    assert options.for_algorithm("gdcpp") == ({"clip_grad_norm": 1.0}, {"patience": 3})  # its config; FitConfig
    assert options.for_algorithm("raml") == ({}, {})
    with pytest.raises(KeyError, match="no algorithm 'ppo'"):
        split_algorithm_settings({"ppo.lr": 1.0}, available)
    with pytest.raises(KeyError, match="raml has no setting 'bogus'"):
        split_algorithm_settings({"raml.bogus": 1.0}, available)


def test_a_registered_algorithm_runs_in_the_bench_by_registration_alone(tmp_path):
    """A toy algorithm registered here appears in the seq2seq suite and runs, with the reward and the
    defaults it declares; the suite knows nothing of it."""
    from dataclasses import dataclass

    from seqrl.algorithms import ALGORITHMS, MLE, register_algorithm
    from seqrl.algorithms.base import Requirements
    from seqrl.bench import SUITES, run_suite

    seen = {}

    @register_algorithm("toy_reward_mle")
    class ToyRewardMLE(MLE):
        """MLE that also holds a reward (to check that the suite hands it one)."""

        requires = Requirements(reward=True)

        @dataclass(frozen=True, kw_only=True)
        class Config(MLE.Config):
            reward: str = "bleu"
            marker: int = 0

        @classmethod
        def defaults_for(cls, policy, offer, given):
            seen["budget"] = offer.budget(given.get("batch_size", cls.Config.batch_size))
            return {"marker": 7}

        def __init__(self, policy, config=None, *, reward=None):
            from seqrl.algorithms.base import resolve_reward

            super().__init__(policy, config)
            self.reward = resolve_reward(reward, self.config.reward, policy.vocab)
            seen["reward"], seen["marker"] = self.reward.name, self.config.marker

    try:
        assert "toy_reward_mle" in SUITES.get("seq2seq")().available_algos()
        assert "toy_reward_mle" not in SUITES.get("gam")().available_algos()  # it needs no potential
        payload = run_suite("seq2seq", quick=True, seeds=[0], algos=["toy_reward_mle"], device="cpu", out=tmp_path,
                            progress=False, echo=lambda _: None,
                            settings={"train_size": 32, "valid_size": 8, "test_size": 4, "mle_epochs": 1,
                                      "finetune_epochs": 1, "hidden_size": 8, "reward": "hamming"})
    finally:
        ALGORITHMS.unregister("toy_reward_mle")
    assert [r["algorithm"] for r in payload["runs"]] == ["mle_pretrained", "toy_reward_mle"]
    assert seen == {"budget": 1, "reward": "hamming", "marker": 7}
    assert "toy_reward_mle" not in ALGORITHMS


def test_merge_results_joins_runs_and_keeps_the_chosen_algorithms(tmp_path):
    """benchmarks/merge_results.py: one table over runs split by seed, ``--algos`` drops the other rows."""
    from pathlib import Path

    from seqrl.bench.store import write_results
    from seqrl.bench.suite import RunRecord

    metrics = {m: 1.0 for m in ("bleu", "rouge1", "rouge2", "rougeL", "exposure_drop", "wall_s")}
    for seed in (0, 1):
        records = [RunRecord(a, seed, {"task": "toy"}, dict(metrics, bleu=10.0 * (seed + 1)))
                   for a in ("mle", "raml", "interpolation")]
        write_results("seq2seq", "cpu", f"2026-01-0{seed + 1}", records, tmp_path / f"s{seed}")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "merge_results.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "s0"), str(tmp_path / "s1"), "--algos",
                          "mle,raml", "--out", str(tmp_path / "merged")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert sorted((r["algorithm"], r["seed"]) for r in merged["runs"]) == [("mle", 0), ("mle", 1), ("raml", 0),
                                                                          ("raml", 1)]
    assert merged["started"] == "2026-01-01"
    assert "15.00 ± 7.07" in out.stdout  # BLEU 10 and 20 over the two seeds
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "s0"), "--algos", "spg", "--out",
                          str(tmp_path / "none")], capture_output=True, text=True)
    assert out.returncode != 0 and "no runs of ['spg']" in out.stderr
