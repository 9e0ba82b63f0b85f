"""Per-step metrics (seqrl.tracking): metrics.csv holds exactly what fit saw at every step and evaluation,
survives a resume without duplicates, numbers the fits of a bench job; TensorBoard gets the same scalars;
a missing tensorboard package is one clear line."""

from __future__ import annotations

import sys

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import make_algorithm
from seqrl.cli import main
from seqrl.policies import make_policy
from seqrl.tracking import TENSORBOARD_HINT, log_runs, read_metrics, require_tensorboard
from seqrl.training import Callback, FitConfig, fit
from seqrl.types import Vocab

FAST = dict(progress=False, device="cpu")


class Seen(Callback):
    """What fit hands its callbacks: the step metrics, and the metrics at each evaluation."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []

    def on_step_end(self, algorithm, state) -> None:
        self.steps.append(dict(state.metrics))

    def on_evaluation(self, algorithm, state) -> None:
        self.evaluations.append(dict(state.metrics))


def train(folder, *, steps: int = 6, seen: Callback | None = None, resume_from=None, **config):
    vocab = Vocab(["0", "1"])
    space = exact.enumerate_sequences(vocab, 3)
    data = space.index(torch.arange(space.batch_size).repeat(2))
    torch.manual_seed(0)
    policy = make_policy("lstm", vocab, 3, hidden_size=8)
    cfg = FitConfig(max_steps=steps, eval_every=2, evaluate_at_start=True,
                    state_path=str(folder / "state.pt"), log_dir=str(folder), **FAST, **config)
    return fit(make_algorithm("mle", policy, batch_size=5), data, valid=space, config=cfg,
               callbacks=[seen] if seen else (),
               resume_from=resume_from)


def test_metrics_csv_holds_every_step_and_the_evaluations_exactly(tmp_path):
    seen = Seen()
    result = train(tmp_path, seen=seen)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6]  # step 0: the evaluation at the start
    for row, step in zip(rows[1:], seen.steps):
        assert {k: row[k] for k in step} == step  # every loss and metric key, every digit
    evaluated = {int(e["step"]): e for e in seen.evaluations}
    assert sorted(evaluated) == [0, 2, 4, 6]
    for row in rows:
        if int(row["step"]) in evaluated:
            assert row == evaluated[int(row["step"])]  # step metrics and valid_ce on one row
        else:
            assert "valid_ce" not in row
    assert [e["valid_ce"] for e in seen.evaluations] == [h["valid_ce"] for h in result.history]
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step" and {"loss", "nll", "grad_norm", "valid_ce"} <= set(header)


def test_a_resumed_fit_continues_the_csv_as_one_run_would(tmp_path):
    train(tmp_path / "whole", steps=6)
    train(tmp_path / "part", steps=4)
    (tmp_path / "part" / "metrics.csv").open("a").write("5,999,999\n")  # a step after the saved state
    train(tmp_path / "part", steps=6, resume_from=tmp_path / "part" / "state.pt")
    assert (tmp_path / "part" / "metrics.csv").read_text() == (tmp_path / "whole" / "metrics.csv").read_text()
    train(tmp_path / "part", steps=2)  # a fresh run into the same folder replaces the file
    assert [r["step"] for r in read_metrics(tmp_path / "part" / "metrics.csv")] == [0, 1, 2]


def test_fits_inside_log_runs_get_numbered_folders(tmp_path):
    with log_runs(tmp_path / "job"):
        for _ in range(2):
            vocab = Vocab(["0", "1"])
            data = exact.enumerate_sequences(vocab, 2)
            fit(make_algorithm("mle", make_policy("lstm", vocab, 2, hidden_size=4)), data,
                config=FitConfig(max_epochs=1, **FAST))
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["01-mle", "02-mle"]
    assert len(read_metrics(tmp_path / "job" / "02-mle" / "metrics.csv")) == 1


def test_tensorboard_gets_the_csv_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tmp_path, tensorboard_dir=str(tmp_path / "tb"))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    rows = read_metrics(tmp_path / "metrics.csv")
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(int(r["step"]), pytest.approx(r["loss"], rel=1e-6)) for r in rows if "loss" in r]
    valid = [(e.step, e.value) for e in events.Scalars("eval/valid_ce")]
    assert valid == [(int(r["step"]), pytest.approx(r["valid_ce"], rel=1e-6)) for r in rows if "valid_ce" in r]
    assert "eval/loss" not in events.Tags()["scalars"]  # an evaluation logs what it adds, not the step's again


def test_a_missing_tensorboard_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    with pytest.raises(ImportError, match=r"pip install 'seqrl\[tensorboard\]'"):
        require_tensorboard()
    with pytest.raises(ImportError, match="tensorboard"):
        train(tmp_path, tensorboard_dir=str(tmp_path / "tb"))
    code = main(["train", "mle", "--env", "seqrl/Copy-v0", "--tensorboard", str(tmp_path / "tb"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and TENSORBOARD_HINT in err


def test_train_cli_writes_metrics_csv_and_tensorboard(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    argv = ["train", "mle", "--env", "seqrl/Copy-v0", "--epochs", "2", "--task-set", "train_size=24",
            "--task-set", "valid_size=8", "--task-set", "test_size=8", "--policy-set", "hidden_size=8",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]
    assert main(argv) == 0, capsys.readouterr().err
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [r["step"] for r in rows] == [1, 2] and all("valid_ce" in r for r in rows)  # 1 step per epoch
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
