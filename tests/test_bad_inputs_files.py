"""Hostile and careless files, processes and plug-ins (issue 21): nothing in a file runs as code; every bad number
is refused, naming the option, before anything is written; sizes are bounded before allocation; a resume onto
other inputs, or from a damaged file, is one line; one process per output folder; SIGTERM is Ctrl-C; a full disk
keeps the previous state; a plug-in cannot corrupt a run; files follow the umask; logs show progress."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqrl
from seqrl.algorithms import make_algorithm
from seqrl.bench.runner import run_suite
from seqrl.bench.suite import SUITES
from seqrl.checkpoint import load_checkpoint
from seqrl.cli import main
from seqrl.files import CodeInFileError, DiskFullError, RunLock, UnsafeFileError
from seqrl.policies import make_policy
from seqrl.training import FitConfig, TrainingInterrupted, fit
from seqrl.types import SequenceBatch, Vocab

FAST = dict(progress=False, device="cpu")
TINY_TRAIN = ["--task-set", "train_size=24", "--task-set", "valid_size=8", "--task-set", "test_size=8",
              "--policy-set", "hidden_size=8", "--no-progress", "--device", "cpu"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class Planted:
    """Unpickling this would write ``path``: the way a crafted state, checkpoint or cache file runs code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('ran')",))


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "seqrl-fit-state-2", "payload": Planted(marker)}, path)
    return path


def tiny_data(vocab: Vocab, n: int = 12) -> SequenceBatch:
    g = torch.Generator().manual_seed(0)
    rows = [[int(t) for t in torch.randint(3, len(vocab), (int(torch.randint(1, 3, (1,), generator=g)),),
                                           generator=g)] + [vocab.eos] for _ in range(n)]
    return SequenceBatch.from_lists(rows, pad=vocab.pad)


# --- 1. no code runs from a file -------------------------------------------------------------------------------
def test_a_planted_file_runs_nothing_by_any_route(tmp_path, monkeypatch, capsys, binary_vocab):
    from seqrl.bench.pretrained import LMConfig, cache_path, load_or_train_lm

    marker = tmp_path / "marker"
    # fit(resume_from=…)
    state = plant(tmp_path / "state.pt", marker)
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=4)
    with pytest.raises(CodeInFileError, match=str(state)):
        fit(make_algorithm("mle", policy), tiny_data(binary_vocab), config=FitConfig(max_steps=1, **FAST),
            resume_from=state)
    # load_checkpoint (policy.pt)
    with pytest.raises(CodeInFileError, match="policy checkpoint"):
        load_checkpoint(plant(tmp_path / "policy.pt", marker))
    # the control suite's LM cache: refused, not retrained over and not run
    monkeypatch.setenv("SEQRL_CACHE", str(tmp_path / "cache"))
    plant(cache_path(LMConfig()), marker)
    with pytest.raises(CodeInFileError, match="grammar_lm"):
        load_or_train_lm(LMConfig())
    # seqrl train --resume with a planted DIR/state.pt: exit 2, one line naming the file
    plant(tmp_path / "run" / "state.pt", marker)
    code, _, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Copy-v0", *TINY_TRAIN, "--out", tmp_path / "run",
                           "--resume")
    assert code == 2 and err.count("\n") == 1 and "state.pt" in err and "refused" in err
    # seqrl report: names inside results.json never import a module (suite, reward, algorithms)
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nSUITE = None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    report = tmp_path / "report"
    report.mkdir()
    for suite, settings in (("evilmod:SUITE", {}), ("seq2seq", {"reward": "evilmod:f", "pretrain_algorithm":
                                                                 "evilmod:A"})):
        run = {"algorithm": "mle", "seed": 0, "params": {},
               "metrics": dict.fromkeys(("bleu", "rouge1", "rouge2", "rougeL", "exposure_drop", "wall_s"), 1.0)}
        grid = {"suite": suite, "quick": True, "seeds": None, "algos": ["evilmod:A"], "grid": {},
                "settings": settings, "algorithm_settings": {}}
        (report / "results.json").write_text(json.dumps({"suite": suite, "grid": grid, "runs": [run]}))
        run_cli(capsys, "report", report)
    assert not marker.exists()
    code, _, err = run_cli(capsys, "report", report)
    assert code == 0  # a registered suite's records still report, with its default settings
    (report / "results.json").write_text(json.dumps({"suite": "evilmod:SUITE", "runs": [run]}))
    code, _, err = run_cli(capsys, "report", report)
    assert code == 2 and "not registered" in err and err.count("\n") == 1
    assert not marker.exists() and "evilmod" not in sys.modules
    # a checkpoint whose policy name is module:Class never imports the module
    saved = tmp_path / "named.pt"
    seqrl.save_checkpoint(saved, make_policy("lstm", binary_vocab, 3, hidden_size=4))
    payload = torch.load(saved, weights_only=True)
    payload["policy"] = "evilmod:Policy"
    torch.save(payload, saved)
    with pytest.raises(UnsafeFileError, match="names the policy 'evilmod:Policy', which is not a registered policy"):
        load_checkpoint(saved)
    code, _, err = run_cli(capsys, "train", "reinforce", "--env", "seqrl/Copy-v0", *TINY_TRAIN[:6], "--init", saved,
                           "--steps", "1", "--no-progress")
    assert code == 2 and "not a registered policy" in err and err.count("\n") == 1, err
    assert not marker.exists() and "evilmod" not in sys.modules


# --- 2. every number checked before anything is computed or written -----------------------------------------
BAD_NUMBERS = [
    (["bench", "seq2seq", "--set", "finetune_lr=inf"], "--set finetune_lr: expected a finite number"),
    (["bench", "seq2seq", "--set", "finetune_lr=nan"], "--set finetune_lr: expected a finite number"),
    (["bench", "gam", "--set", "dpg_lr=1e400"], "--set dpg_lr: expected a finite number"),
    (["bench", "gam", "--set", "gdcpp.lr=-inf"], "--set gdcpp.lr: expected a finite number"),
    (["bench", "gam", "--set", "gdcpp.max_epochs=true"], "--set gdcpp.max_epochs: expected int | None, got 'true'"),
    (["bench", "gam", "--set", "dpg_off.samples_per_step=2.5"], "--set dpg_off.samples_per_step: expected int"),
    (["bench", "gam", "--set", "seed_dummy=1"], "--set: unknown setting 'seed_dummy'"),
    (["bench", "gam", "--seeds", str(2**64)], "--seeds"),
    (["bench", "gam", "--sizes", "0"], "--sizes: expected ≥ 1 integers"),
    (["bench", "gam", "--sizes", "500," + str(10**12)], "--sizes: |D| = 1,000,000,000,000 sequences exceeds"),
    (["bench", "gam", "--set", "test_size=" + str(10**11)], "--set test_size: GamSettings.test_size"),
    (["bench", "control", "--set", "lr=inf"], "--set lr: expected a finite number"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--seed", str(2**64)], "--seed"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--lr", "inf"], "--lr: expected a finite number"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--epochs", str(10**30)], "--epochs"),
    (["train", "kl_control", "--env", "seqrl/Motif-v0", "--set", "beta=nan"], "--set beta: expected a finite"),
    (["train", "reinforce", "--env", "seqrl/Copy-v0", "--set", "num_samples=true"], "--set num_samples: expected int"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--task-set", "noise_free=1"], "--task-set: unknown setting"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--task-set", "num_symbols=100000000"],
     "--task-set: CopyTask num_symbols = 100,000,000 symbols exceeds the limit of 1,000,000"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--task-set", "train_size=" + str(10**12)], "exceeds the limit"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--policy-set", "hidden_size=40000"],
     "estimated parameter count"),
    (["train", "mle", "--env", "seqrl/Copy-v0", "--bogus-option"], "unrecognized arguments: --bogus-option"),
    (["train", "mle"], "give --env ENV (a seqrl task) or --model DIR"),
]


@pytest.mark.parametrize("argv, expected", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_bad_numbers_exit_2_naming_the_option_and_write_nothing(capsys, tmp_path, argv, expected):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *argv, "--out", out, "--no-progress", "--device", "cpu")
    assert code == 2, err
    assert expected in err and err.startswith("seqrl: error: ") and err.count("\n") == 1, err
    assert not out.exists()  # nothing written, not even the folder


def test_a_malformed_data_file_is_refused_before_anything_is_written(capsys, tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("a b\tc d\nno tab on this line\n")
    code, _, err = run_cli(capsys, "bench", "seq2seq", "--data", data,
                           "--quick", "--out", tmp_path / "out", "--no-progress", "--device", "cpu")
    assert code == 2 and "pairs.tsv:2: expected 'source<TAB>target'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_empty_out_is_refused(capsys):
    code, _, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Copy-v0", "--out", "")
    assert code == 2 and "--out is empty" in err


def test_api_numbers_are_checked_where_they_are_given(binary_vocab):
    from seqrl.config import SettingError

    with pytest.raises(SettingError, match="FitConfig.max_epochs: expected int | None, got True"):
        FitConfig(max_epochs=True)
    with pytest.raises(SettingError, match="FitConfig.patience: expected int | None, got 1.5"):
        FitConfig(patience=1.5)
    with pytest.raises(SettingError, match="FitConfig.max_steps: expected int | None, got 2.0"):
        FitConfig(max_steps=2.0)
    with pytest.raises(SettingError, match="integer range"):
        FitConfig(seed=2**64)
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=4)
    with pytest.raises(SettingError, match="beta: expected a finite number"):
        make_algorithm("kl_control", policy, reward="motif", beta=float("nan"))
    with pytest.raises(SettingError, match=r"initial_weights\[0\]: expected a finite number"):
        make_algorithm("interpolation", policy, reward="hamming", initial_weights=(float("nan"), 0.0, 1.0))
    with pytest.raises(ValueError, match="seed must be an integer in"):
        seqrl.seed_everything(2**63)


# --- 3. sizes bounded before allocation ----------------------------------------------------------------------
def test_sizes_are_refused_with_the_figure_before_allocation():
    from seqrl import exact
    from seqrl.config import SizeLimitError
    from seqrl.envs import CopyTask, MotifTask

    vocab = Vocab([f"s{i}" for i in range(50)])
    with pytest.raises(exact.SpaceTooLargeError, match="50 symbols and max_len = 1000000 holds more than 2,000,000"):
        exact.enumerate_sequences(vocab, 10**6)
    with pytest.raises(SizeLimitError, match="num_symbols = 100,000,000 symbols exceeds the limit of 1,000,000"):
        CopyTask(num_symbols=100_000_000)
    with pytest.raises(SizeLimitError, match="train_size = 1,000,000,000 sequences exceeds"):
        MotifTask(train_size=10**9)
    with pytest.raises(SizeLimitError, match="GiB"):
        make_policy("lstm", Vocab(["0", "1"]), 10, hidden_size=60_000)


# --- 4. resume refused when the inputs changed; damaged files named ----------------------------------------
def _state_run(binary_vocab, tmp_path, data, hidden=4):
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=hidden, seed=0)
    config = FitConfig(max_steps=2, state_path=str(tmp_path / "state.pt"), state_every=1, **FAST)
    return make_algorithm("mle", policy, batch_size=4), config


def test_resume_onto_other_inputs_is_one_line_naming_the_difference(binary_vocab, tmp_path, monkeypatch):
    data = tiny_data(binary_vocab)
    algo, config = _state_run(binary_vocab, tmp_path, data)
    fit(algo, data, config=config)
    other = tiny_data(binary_vocab, 13)
    algo, _ = _state_run(binary_vocab, tmp_path, other)
    with pytest.raises(ValueError, match="other training data"):
        fit(algo, other, config=config, resume_from=tmp_path / "state.pt")
    algo, _ = _state_run(binary_vocab, tmp_path, data, hidden=5)
    with pytest.raises(ValueError, match=r"another policy \(policy.settings.hidden_size: 4 there, 5 here\)"):
        fit(algo, data, config=config, resume_from=tmp_path / "state.pt")
    monkeypatch.setattr(seqrl._version, "__version__", "9.9.9")
    algo, _ = _state_run(binary_vocab, tmp_path, data)
    with pytest.raises(ValueError, match=r"another seqrl version \(seqrl_version: \"0.1.0\" there, \"9.9.9\" here"):
        fit(algo, data, config=config, resume_from=tmp_path / "state.pt")


def test_a_truncated_state_is_one_line_naming_the_file(binary_vocab, tmp_path):
    data = tiny_data(binary_vocab)
    algo, config = _state_run(binary_vocab, tmp_path, data)
    fit(algo, data, config=config)
    state = tmp_path / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    algo, _ = _state_run(binary_vocab, tmp_path, data)
    with pytest.raises(UnsafeFileError, match=f"{state}: not a readable training state .* corrupt or truncated"):
        fit(algo, data, config=config, resume_from=state)


def test_damaged_run_logs_and_results_are_named_with_the_place(tmp_path, reltest):
    out = tmp_path / "o"
    run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None)
    lines = (out / "runs.jsonl").read_text().splitlines(keepends=True)
    (out / "runs.jsonl").write_text("".join(lines[:2]) + "{garbage\n" + "".join(lines[2:]))
    with pytest.raises(ValueError, match=r"runs.jsonl: line 3 is not a JSON record"):
        run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None, resume=True)
    (out / "runs.jsonl").unlink()
    (out / "results.json").write_text('{"suite": "reltest", "runs": [\n  {"algorithm": "a",,}]}')
    with pytest.raises(ValueError, match=r"results.json: not valid JSON at line 2 column"):
        run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None, resume=True)


def test_a_job_record_without_runs_is_not_finished(tmp_path, reltest):
    out = tmp_path / "o"
    run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None)
    lines = (out / "runs.jsonl").read_text().splitlines()
    emptied = json.loads(lines[1])
    emptied["records"] = []
    (out / "runs.jsonl").write_text("\n".join([lines[0], json.dumps(emptied), *lines[2:]]) + "\n")
    reltest.CALLS.clear()
    run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None, resume=True)
    assert reltest.CALLS == [emptied["job"]["index"]]


def test_resume_onto_other_data_under_the_same_path_is_refused(tmp_path, reltest):
    data = tmp_path / "d.tsv"
    data.write_text("x\ty\n")
    out = tmp_path / "o"
    run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None, grid={"data": [str(data)]})
    data.write_text("x\tz\n")
    with pytest.raises(ValueError, match="data_sha256"):
        run_suite("reltest", device="cpu", out=out, progress=False, echo=lambda _: None, grid={"data": [str(data)]},
                  resume=True)


# --- 5. one process per folder -------------------------------------------------------------------------------
def test_a_second_process_on_one_out_is_refused_naming_the_holder(capsys, tmp_path, reltest):
    out = tmp_path / "o"
    with RunLock(out):
        code, _, err = run_cli(capsys, "bench", "reltest", "--out", out, "--no-progress", "--device", "cpu")
        assert code == 2 and f"PID {os.getpid()}" in err and err.count("\n") == 1
        code, _, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Copy-v0", *TINY_TRAIN, "--steps", "1",
                               "--out", out)
        assert code == 2 and f"PID {os.getpid()}" in err
    # a lock whose holder was killed does not block
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from seqrl.files import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(seqrl.files.LockedError, match=f"PID {holder.pid}"):
        RunLock(out).acquire()
    holder.kill()
    holder.wait()
    assert run_cli(capsys, "bench", "reltest", "--out", out, "--no-progress", "--device", "cpu")[0] == 0


# --- 6. SIGTERM is Ctrl-C; a full disk keeps the previous state ---------------------------------------------
class _SignalAt:
    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def on_step_end(self, algorithm, state):
        if state.step == self.step:
            os.kill(os.getpid(), self.signum)

    def on_evaluation(self, algorithm, state): ...

    def on_fit_end(self, algorithm, state): ...


def test_sigterm_saves_the_state_and_resume_continues_identically(binary_vocab, tmp_path):
    data = tiny_data(binary_vocab, 20)

    def new():
        return make_algorithm("mle", make_policy("lstm", binary_vocab, 3, hidden_size=8, dropout=0.3, seed=3),
                              batch_size=6, lr=1e-2)

    config = FitConfig(max_epochs=3, eval_every=3, seed=1,
                       state_path=str(tmp_path / "state.pt"), **FAST)
    whole = new()
    fit(whole, data, valid=data, config=config)
    (tmp_path / "state.pt").unlink()
    with pytest.raises(TrainingInterrupted, match="terminated at step 4") as info:
        fit(new(), data, valid=data, config=config, callbacks=[_SignalAt(4, signal.SIGTERM)])
    assert info.value.exit_code == 143 and info.value.saved == tmp_path / "state.pt"
    resumed = new()
    fit(resumed, data, valid=data, config=config, resume_from=tmp_path / "state.pt")
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_sigterm_during_a_bench_keeps_finished_jobs_and_exits_143(tmp_path, reltest, capsys):
    reltest.TERM_AT = 2
    code, _, err = run_cli(capsys, "bench", "reltest", "--out", tmp_path / "o", "--no-progress", "--device", "cpu")
    assert code == 143 and err == "seqrl: terminated: 2 of 4 jobs saved in " + str(tmp_path / "o") + \
        "; rerun with --resume\n"
    reltest.TERM_AT = None
    reltest.CALLS.clear()
    assert run_cli(capsys, "bench", "reltest", "--out", tmp_path / "o", "--no-progress", "--device", "cpu",
                   "--resume")[0] == 0
    assert reltest.CALLS == [2, 3]


def test_sigterm_kills_a_real_train_and_resume_matches_the_whole_run(tmp_path):
    """The entry point itself: SIGTERM (sent by the run's own reward at its 6th call, not by a clock) exits 143
    with one line, and ``--resume`` ends with the weights of the uninterrupted run."""
    (tmp_path / "termreward.py").write_text(
        "import os, signal\nCALLS = [0]\n"
        "def score(hyps, refs):\n"
        "    CALLS[0] += 1\n"
        "    if os.environ.get('TERM_AT') and CALLS[0] == int(os.environ['TERM_AT']):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return (hyps.tokens[:, 0] == refs.tokens[:, 0]).float()\n")
    args = [sys.executable, "-m", "seqrl", "train", "reinforce", "--env", "seqrl/Copy-v0", *TINY_TRAIN,
            "--epochs", "2", "--batch-size", "8", "--reward", "termreward:score", "--set", "baseline=mean"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    whole = subprocess.run([*args, "--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    part = subprocess.run([*args, "--out", str(tmp_path / "part")], env={**env, "TERM_AT": "6"},
                          capture_output=True, text=True)
    assert part.returncode == 143 and part.stderr.count("\n") == 1 and "terminated at step" in part.stderr
    assert not list((tmp_path / "part").glob(".*.tmp"))
    resumed = subprocess.run([*args, "--out", str(tmp_path / "part"), "--resume"], env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "whole" / "policy.pt").state_dict()
    b = load_checkpoint(tmp_path / "part" / "policy.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_keeps_the_previous_state_and_says_so(binary_vocab, tmp_path, monkeypatch, capsys):
    data = tiny_data(binary_vocab)
    algo, config = _state_run(binary_vocab, tmp_path, data)
    config = FitConfig(**{**vars(config), "max_steps": 1})
    fit(algo, data, config=config)
    before = (tmp_path / "state.pt").read_bytes()

    def full(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    algo, _ = _state_run(binary_vocab, tmp_path, data)
    with pytest.raises(DiskFullError, match="no space left .* the previous file is intact"):
        fit(algo, data, config=FitConfig(**{**vars(config), "max_steps": 2}), resume_from=tmp_path / "state.pt")
    assert (tmp_path / "state.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    code, _, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Copy-v0", *TINY_TRAIN, "--steps", "1",
                           "--out", tmp_path / "cli")
    assert code == 2 and err.startswith("seqrl: error: no space left") and err.count("\n") == 1


# --- 7. a plug-in cannot silently corrupt a run ---------------------------------------------------------------
def _reinforce_weights(reward, steps=3):
    from seqrl.envs import CopyTask

    task = CopyTask(num_symbols=3, max_length=3, train_size=16, valid_size=4, test_size=4)
    policy = make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab, hidden_size=8,
                         embedding_dim=4, seed=0)
    fit(make_algorithm("reinforce", policy, reward=reward, baseline="mean", num_samples=2, batch_size=8),
        task.split("train"), config=FitConfig(max_steps=steps, seed=0, **FAST))
    return policy.state_dict()


def test_a_reward_writing_into_its_inputs_changes_nothing():
    from seqrl.rewards import REWARDS

    def pure(hyps, refs):
        return (hyps.tokens[:, 0] == refs.tokens[:, 0]).float()

    def vandal(hyps, refs):
        value = pure(hyps, refs)
        hyps.tokens.fill_(0)
        hyps.lengths.fill_(1)
        refs.tokens.zero_()
        return value

    REWARDS.register("pure_t21", pure)
    REWARDS.register("vandal_t21", vandal)
    try:
        a, b = _reinforce_weights("pure_t21"), _reinforce_weights("vandal_t21")
    finally:
        REWARDS.unregister("pure_t21")
        REWARDS.unregister("vandal_t21")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sys_exit_in_a_plugin_is_the_plugins_failure(capsys, tmp_path, monkeypatch, binary_vocab):
    from seqrl.ebm.base import FunctionPotential, PotentialError, checked_log_potential
    from seqrl.rewards.base import RewardError, compute_reward, make_reward

    (tmp_path / "exitreward.py").write_text("import sys\ndef score(hyps, refs):\n    sys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reward = make_reward("exitreward:score", binary_vocab)
    batch = tiny_data(binary_vocab, 2)
    with pytest.raises(RewardError, match=r"exitreward:score.*called sys.exit\(3\)"):
        compute_reward(reward, batch, batch)
    with pytest.raises(PotentialError, match=r"called sys.exit\(4\)"):
        checked_log_potential(FunctionPotential(lambda b: sys.exit(4), "quitter"), batch)
    code, _, err = run_cli(capsys, "train", "reinforce", "--env", "seqrl/Copy-v0", *TINY_TRAIN, "--steps", "1",
                           "--reward", "exitreward:score")
    assert code == 2 and "sys.exit(3)" in err and "exitreward" in err and err.count("\n") == 1


def test_huge_finite_plugin_values_are_named_when_they_overflow(binary_vocab):
    from seqrl.ebm.base import FunctionPotential, PotentialError
    from seqrl.rewards import REWARDS

    def huge(hyps, refs):
        return torch.full((hyps.batch_size,), 3e38)

    REWARDS.register("huge_t21", huge)
    try:
        with pytest.raises(FloatingPointError, match=r"reward 'huge_t21' .*last returned values in \[3e\+38, 3e\+38\]"):
            _reinforce_weights("huge_t21", steps=1)
    finally:
        REWARDS.unregister("huge_t21")
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=4, seed=0)
    potential = FunctionPotential(lambda b: torch.full((b.batch_size,), 800.0), "hot")
    algo = make_algorithm("dpg", policy, potential=potential, samples_per_step=8)
    with pytest.raises(PotentialError, match=r"Ẑ .* overflowed.*log P/q of the batch is 80.*potential 'hot'.*"
                                             r"\[800, 800\]"):
        fit(algo, None, config=FitConfig(max_steps=1, **FAST))


def test_a_potential_on_the_meta_device_is_named(binary_vocab):
    from seqrl.ebm.base import FunctionPotential, PotentialError, checked_log_potential

    meta = FunctionPotential(lambda b: torch.zeros(b.batch_size, device="meta"), "ghost")
    with pytest.raises(PotentialError, match="potential 'ghost'.*meta device"):
        checked_log_potential(meta, tiny_data(binary_vocab, 3))


# --- 8. files follow the umask -------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_follow_the_umask(tmp_path, reltest, capsys, umask, mode):
    old = os.umask(umask)
    try:
        run_suite("reltest", device="cpu", out=tmp_path / "b", progress=False, echo=lambda _: None)
        from seqrl.bench.report import rebuild_report

        rebuild_report(tmp_path / "b", echo=lambda _: None)
        assert run_cli(capsys, "train", "mle", "--env", "seqrl/Copy-v0", *TINY_TRAIN, "--steps", "2",
                       "--out", tmp_path / "t")[0] == 0
    finally:
        os.umask(old)
    files = [tmp_path / "b" / n for n in ("results.json", "results.csv", "runs.jsonl", "report.txt",
                                          "reltest_plot.png")]
    files += [tmp_path / "t" / n for n in ("state.pt", "policy.pt", "train.json", "metrics.csv")]
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: oct(mode) for f in files}


# --- 9. unattended runs show progress ----------------------------------------------------------------------
def test_unattended_runs_print_one_plain_line_per_evaluation_or_job(capsys, tmp_path, reltest):
    code, out, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Copy-v0", *TINY_TRAIN[:-3], "--device", "cpu",
                             "--epochs", "2", "--batch-size", "8")
    assert code == 0 and "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("mle: step")]
    assert [line.split()[2] for line in lines] == ["3/6", "6/6"] and all("valid_ce=" in line for line in lines)
    code, out, err = run_cli(capsys, "bench", "reltest", "--out", tmp_path / "o", "--device", "cpu")
    assert code == 0 and "\r" not in err
    assert [line.split(":")[1].split("(")[0].strip() for line in err.splitlines()] == \
        [f"job {i}/4 done" for i in range(1, 5)]


@pytest.fixture
def reltest(tmp_path):
    """The throwaway suite of test_bench_reliability, plus TERM_AT: a job index at which the job sends SIGTERM to
    its own process (a scheduler's stop, at an exact point)."""
    from test_bench_reliability import SUITE_SOURCE

    source = SUITE_SOURCE.replace("        _gate(job[\"index\"])", "        if TERM_AT == job[\"index\"]:\n"
                                  "            os.kill(os.getpid(), 15)\n        _gate(job[\"index\"])")
    source = source.replace("INTERRUPT_AT = None", "INTERRUPT_AT = None\nTERM_AT = None")
    path = tmp_path / "reltest_suite_t21.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("reltest_suite_t21", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        SUITES.unregister("reltest")


def test_what_the_second_probe_found_is_refused_before_compute(binary_vocab, tmp_path):
    """The bad numbers and inputs an independent probe of the CLI and API found accepted (or crashing): each is now
    refused where it is given, naming what to change."""
    from seqrl.ebm.features import FeatureMaskError, parse_mask
    from seqrl.envs.tasks import ToyTranslationTask
    from seqrl.policies.base import SamplingOptions, top_p_filter
    from seqrl.prompts import read_prompt_texts

    with pytest.raises(ValueError, match="have a target of 60–60 words; widen"):  # was an endless loop
        ToyTranslationTask(train_size=4, valid_size=1, test_size=1, min_target_length=60, max_target_length=60)
    with pytest.raises(ValueError, match="two_word_fraction must be in"):
        ToyTranslationTask(two_word_fraction=-5.0)
    with pytest.raises(FeatureMaskError, match="selects no feature"):
        parse_mask("0000000")
    for settings, message in ((dict(embedding_dim=-4), "embedding_dim must be an integer ≥ 1"),
                              (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
                              (dict(hidden_size=True), "hidden_size must be an integer")):
        with pytest.raises(ValueError, match=message):
            make_policy("lstm", binary_vocab, 3, **settings)
    with pytest.raises(ValueError, match="max_len must be an integer ≥ 1"):
        make_policy("lstm", binary_vocab, 2.5)  # type: ignore[arg-type]
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=4)
    for settings, message in ((dict(lr=1e30), r"lr must be in \[0, 100\]"),
                              (dict(weight_decay=1e300), "weight_decay must be in"),
                              (dict(samples_per_step=2**50), "exceeds the limit of 10,000,000 sequences a step"),
                              (dict(kl_samples=2**40), "kl_samples = ")):
        with pytest.raises(ValueError, match=message):
            make_algorithm("dpg", policy, potential=type("P", (), {"log_potential": lambda s, b: b.lengths * 0.0})(),
                           **settings)
    with pytest.raises(TypeError, match="policy must be a seqrl policy"):
        make_algorithm("mle", None)
    with pytest.raises(ValueError, match="seed must be in"):
        FitConfig(seed=-1)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        FitConfig(device="tpu")
    with pytest.raises(TypeError, match="train must be a SequenceBatch"):
        fit(make_algorithm("mle", policy), "not a batch", config=FitConfig(max_steps=1, **FAST))  # type: ignore
    with pytest.raises(ValueError, match="temperature must be in"):
        SamplingOptions(temperature=1e-40)
    logits = torch.randn(2, 5)
    assert torch.isfinite(top_p_filter(logits, 1e-300)).sum(1).tolist() == [1, 1]  # the top token stays
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match="deep.jsonl:1: JSON nested too deeply"):
        read_prompt_texts(tmp_path / "deep.jsonl")


def test_what_the_third_probe_found_is_one_line(binary_vocab, tmp_path):
    """A text file given as a checkpoint (torch's unpickler raised IndexError on it), a hand-edited state whose step
    is negative, a policy whose parameters are on the meta device, and a results.json whose suite was changed."""
    from seqrl.bench.report import rebuild_report
    from seqrl.checkpoint import save_training_state
    from seqrl.files import load_tensors

    passwd = tmp_path / "policy.pt"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    with pytest.raises(UnsafeFileError, match="policy.pt: not a readable policy checkpoint"):
        load_checkpoint(passwd)

    data = tiny_data(binary_vocab)
    algo, config = _state_run(binary_vocab, tmp_path, data)
    fit(algo, data, config=config)
    state = load_tensors(tmp_path / "state.pt")
    state["loop"]["step"] = -3
    save_training_state(tmp_path / "state.pt", state)
    algo, _ = _state_run(binary_vocab, tmp_path, data)
    with pytest.raises(ValueError, match="records step=-3; expected an integer ≥ 0"):
        fit(algo, data, config=config, resume_from=tmp_path / "state.pt")

    with torch.device("meta"):
        on_meta = make_policy("lstm", binary_vocab, 3, hidden_size=4)
    with pytest.raises(ValueError, match="parameters on the 'meta' device"):
        fit(make_algorithm("mle", on_meta), data, config=FitConfig(max_steps=1, **FAST))

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(json.dumps({"suite": "control", "runs": [
        {"algorithm": "mle", "seed": 0, "params": {"task": "toy_translation"}, "metrics": {"bleu": 1.0}}]}))
    with pytest.raises(ValueError, match="suite 'control' finds none of its runs among the file's 1 record"):
        rebuild_report(tmp_path / "b", echo=lambda _: None)
