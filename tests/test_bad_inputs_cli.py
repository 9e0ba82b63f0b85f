"""Bad command lines: each exits 2 with one ``error:`` line that names the offending option, value or path,
before anything is trained or written (the CLI's ``main``, in-process; one subprocess test checks the real
entry point). Also: same seed → same run across processes, and ``seqrl train --resume``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqrl.cli import main

TINY = ["--task-set", "train_size=24", "--task-set", "valid_size=8", "--task-set", "test_size=8",
        "--policy-set", "hidden_size=8", "--no-progress", "--device", "cpu"]


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BAD = [
    # (argv, text the message must contain)
    (["train", "ppo", "--env", "seqrl/Copy-v0"], "unknown algorithm 'ppo'"),
    (["train", "mle", "--env", "seqrl/Nope-v0"], "unknown environment 'seqrl/Nope-v0'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--epochs", "-3"], "--epochs: expected an integer ≥ 1, got '-3'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--epochs", "two"], "--epochs: expected an integer ≥ 1, got 'two'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--steps", "0"], "--steps: expected an integer ≥ 1, got '0'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--batch-size", "0"], "--batch-size: expected an integer ≥ 1"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--lr", "-1"], "--lr: expected a number ≥ 0, got '-1'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--seed", "-2"], "--seed: expected an integer ≥ 0, got '-2'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--patience", "0"], "--patience: expected an integer ≥ 1"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--policy", "rnn9"], "unknown policy 'rnn9'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--set", "bogus=1"], "mle has no config fields ['bogus']"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--set", "noequals"], "--set expects KEY=VALUE, got 'noequals'"),
    (["train", "reinforce", "--env", "seqrl/Copy-v0", "--set", "baseline=foo"],
     "--set baseline: expected 'none' | 'mean' | 'self_critical', got 'foo'"),
    (["train", "reinforce", "--env", "seqrl/Copy-v0", "--set", "num_samples=many"],
     "--set num_samples: expected int, got 'many'"),
    (["train", "reinforce", "--env", "seqrl/Copy-v0", "--set", "reward=nonesuch"], "unknown reward 'nonesuch'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--task-set", "foo=1"], "unknown setting 'foo'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--task-set", "train_size=lots"],
     "--task-set train_size: expected int"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--policy-set", "hidden=3"],
     "--policy-set: unknown setting 'hidden'"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--resume"], "--resume needs --out DIR"),
    (["bench", "atari"], "unknown suite 'atari'"),
    (["bench", "gam", "--data", "x.tsv"], "--data does not apply to suite 'gam'"),
    (["bench", "seq2seq", "--motifs", "101"], "--motifs does not apply to suite 'seq2seq'"),
    (["bench", "seq2seq", "--sizes", "5"], "--sizes does not apply to suite 'seq2seq'"),
    (["bench", "seq2seq", "--data", "a.tsv,b.tsv"], "--data takes one file, got 2"),
    (["bench", "seq2seq", "--data", "missing.tsv"], "--data 'missing.tsv': no such file"),
    (["bench", "seq2seq", "--seeds", "0,a"], "--seeds: expected comma-separated integers, got '0,a'"),
    (["bench", "seq2seq", "--seeds", "-1"], "--seeds: expected non-negative integers"),
    (["bench", "gam", "--sizes", "500,big"], "--sizes: expected comma-separated integers, got '500,big'"),
    (["bench", "gam", "--algos", "raml"], "suite 'gam' has no algorithms ['raml']"),
    (["bench", "seq2seq", "--algos", "mle,,raml"], "--algos: an empty name"),
    (["bench", "gam", "--set", "motif_samples=0"], "GamSettings.motif_samples must be ≥ 1, got 0"),
    (["bench", "gam", "--set", "distill_samples=0"], "GamSettings.distill_samples must be ≥ 1, got 0"),
    (["bench", "gam", "--set", "dpg_lrr=1"], "unknown setting 'dpg_lrr'"),
    (["bench", "seq2seq", "--set", "eval_every=0"], "Seq2SeqSettings.eval_every must be ≥ 1, got 0"),
    (["bench", "seq2seq", "--set", "noise=1.5"], "Seq2SeqSettings.noise must be in [0, 1], got 1.5"),
    (["bench", "seq2seq", "--set", "reward=nonesuch"], "unknown reward 'nonesuch'"),
    (["bench", "seq2seq", "--set", "protocol=bogus"], "unknown protocol 'bogus'"),
    (["bench", "seq2seq", "--set", "raml.bogus=1"], "raml has no setting 'bogus'"),
    (["bench", "seq2seq", "--set", "ppo.lr=1"], "unknown algorithm 'ppo'"),
    (["bench", "seq2seq", "--set", "reinforce.baseline=foo"], "expected 'none' | 'mean' | 'self_critical'"),
    (["bench", "gam", "--set", "gdcpp.max_steps=0"], "FitConfig.max_steps must be ≥ 1, got 0"),
    (["bench", "gam", "--set", "dpg_off.clip_grad_norm=0"],
     "--set dpg_off.clip_grad_norm: DPGBase.Config.clip_grad_norm must be > 0 or None, got 0"),
    (["bench", "gam", "--set", "dpg_off.proposal_update=foo"], "expected 'never' | 'valid_ce' | 'kl'"),
    (["bench", "gam", "--masks", "10x1111"], "mask"),
    (["bench", "gam", "--motifs", "10201"], "motif"),
]


@pytest.mark.parametrize("argv, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_command_lines_exit_2_naming_the_culprit(capsys, tmp_path, argv, expected):
    out_dir = tmp_path / "out"
    if argv[0] == "bench":
        argv = [*argv, "--out", str(out_dir), "--no-progress", "--device", "cpu"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert expected in err, err
    assert "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())  # nothing written


def test_out_that_is_a_file_fails_before_training(capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    code, _, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Copy-v0", "--out", str(target), *TINY)
    assert code == 2 and f"--out '{target}' is a file, not a directory" in err
    assert target.read_text() == "not a directory"


def test_task_set_keeps_a_string_where_the_field_is_a_string(capsys, tmp_path):
    """``--task-set motif=101`` is the motif '101', not the integer 101."""
    code, out, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Motif-v0", "--task-set", "motif=101",
                             "--task-set", "length=6", "--task-set", "train_size=16", "--task-set", "test_size=8",
                             "--policy-set", "hidden_size=8", "--epochs", "1", "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["steps"] == 1


def test_help_lists_every_choice(capsys):
    from seqrl.cli import catalogue

    for argv in (["--help"], ["train", "--help"], ["bench", "--help"]):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0
        text = " ".join(out.split())  # argparse wraps lines
        for name in catalogue()["algorithms"]:
            assert name in text, (argv, name)
    _, out, _ = run_cli(capsys, "train", "--help")
    text = " ".join(out.split())
    for key in ("envs", "policies", "rewards"):
        for name in catalogue()[key]:
            assert name in text, (key, name)
    for option in ("--epochs", "--resume", "--task-set", "--policy-set", "--progress", "--no-progress"):
        assert option in text


def _train(tmp_path, name, seed, *extra):
    out = tmp_path / name
    cmd = [sys.executable, "-m", "seqrl", "train", "mle", "--env", "seqrl/Copy-v0", "--epochs", "2", "--seed",
           str(seed), "--out", str(out), *TINY, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "train.json").read_text())
    report.pop("wall_s")
    weights = torch.load(out / "policy.pt", weights_only=False)["state_dict"]
    return report, weights, proc


def test_same_seed_same_run_across_processes(tmp_path):
    """Two processes with --seed 0 give bit-identical weights and metrics (the task's data and the policy's
    initialization are both seeded before they are drawn); --seed 1 gives others. No progress-bar frames
    reach a log: stdout and stderr are pipes here."""
    report_a, weights_a, proc = _train(tmp_path, "a", 0)
    report_b, weights_b, _ = _train(tmp_path, "b", 0)
    report_c, weights_c, _ = _train(tmp_path, "c", 1)
    assert report_a == report_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert any(not torch.equal(weights_a[k], weights_c[k]) for k in weights_a)
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr


def test_train_resume_continues_a_finished_state(tmp_path, capsys):
    """``--resume`` reloads DIR/state.pt: resuming a 2-epoch run for 3 epochs equals a 3-epoch run."""
    base = ["train", "mle", "--env", "seqrl/Copy-v0", "--seed", "0", *TINY]
    assert run_cli(capsys, *base, "--epochs", "3", "--out", str(tmp_path / "whole"))[0] == 0
    assert run_cli(capsys, *base, "--epochs", "2", "--out", str(tmp_path / "part"))[0] == 0
    code, out, err = run_cli(capsys, *base, "--epochs", "3", "--out", str(tmp_path / "part"), "--resume")
    assert code == 0, err
    whole = torch.load(tmp_path / "whole" / "policy.pt", weights_only=False)["state_dict"]
    part = torch.load(tmp_path / "part" / "policy.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(whole[k], part[k]) for k in whole)
    code, _, err = run_cli(capsys, *base, "--epochs", "3", "--out", str(tmp_path / "empty"), "--resume")
    assert code == 2 and "--resume: no training state in" in err


def test_real_entry_point_usage_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "seqrl", "bench", "gam", "--set", "motif_samples=0", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("seqrl: error:") and "Traceback" not in proc.stderr
    assert not Path(tmp_path / "o").exists()
