"""benchmarks/verdicts.py: issue #24's verdict and replication tables, read from seq2seq results files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from seqrl.bench.store import write_results
from seqrl.bench.suite import RunRecord

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "verdicts.py"


@pytest.fixture(scope="module")
def verdicts():
    """The script as a module, run in-process (a subprocess per call would re-import torch each time)."""
    spec = importlib.util.spec_from_file_location("verdicts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["verdicts"] = module  # its dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["verdicts"]


def _run(verdicts, monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["verdicts.py", *args])
    verdicts.main()
    return capsys.readouterr().out


def _erpo_run(folder: Path, seeds: range, interpolation_gain: float) -> Path:
    """An ERPO-preset results file where interpolation − MLE is ``interpolation_gain`` ± 0.1 per seed."""
    records = []
    for seed in seeds:
        jitter = 0.1 if seed % 2 else -0.1
        records += [RunRecord("mle", seed, {"task": "t"}, {"bleu": 40.0 + seed}),
                    RunRecord("interpolation", seed, {"task": "t"},
                              {"bleu": 40.0 + seed + interpolation_gain + jitter})]
    write_results("seq2seq", "cpu", "2026-01-01", records, folder)
    return folder / "results.json"


def _claim_line(stdout: str, text: str) -> list[str]:
    line = next(row for row in stdout.splitlines() if text in row)
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_replication_table_tells_a_repeated_effect_from_a_different_one(tmp_path, verdicts, monkeypatch, capsys):
    """Interpolation − MLE is +1 on the documented seeds: other seeds at +1 agree (same verdict, the Welch interval
    of the difference covers 0); other seeds at −1 do not (contradicted, and the interval excludes 0)."""
    documented = _erpo_run(tmp_path / "docs", range(10), +1.0)
    rows = {}
    for name, gain in (("same", +1.0), ("reversed", -1.0)):
        other = _erpo_run(tmp_path / name, range(10, 15), gain)
        out = _run(verdicts, monkeypatch, capsys, "--erpo", str(documented), "--erpo-other", str(other))
        rows[name] = _claim_line(out, "interpolation > MLE")
    assert rows["same"][3] == rows["same"][5] == "**reproduced**"
    assert rows["same"][-2:] == ["yes", "yes"]
    assert rows["reversed"][5] == "**contradicted**"
    assert rows["reversed"][-2:] == ["**no**", "**no**"]
    assert "(n=5)" in rows["same"][4] and "(n=10)" in rows["same"][2]


def test_welch_interval_matches_the_textbook_formula(verdicts):
    """Two samples of equal size and variance: Welch's df is 2(n − 1) and the half-width t·√(2s²/n)."""
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]  # s² = 5/3 each, df = 6 exactly
    lo, hi = verdicts.welch_interval(a, b)
    half = 2.447 * (2 * (5 / 3) / 4) ** 0.5
    assert abs((lo + hi) / 2 - 2.0) < 1e-12 and abs((hi - lo) / 2 - half) < 1e-12


def test_divergence_claims_read_how_far_validation_bleu_fell_from_the_curves(tmp_path, verdicts, monkeypatch,
                                                                              capsys):
    """§6.4's divergence is read on the curves beside the results (NAME_curves.json): the fall of validation BLEU
    below the start at the worst evaluation, even where the returned checkpoint (the start) hides it."""
    records, curves = [], []
    for seed in range(4):
        for label, fall in (("erac[beta=0.1,lambda_var=0.001]", 1.0 + 0.1 * seed), ("erac[beta=1,lambda_var=0.001]",
                                                                                 25.0 + seed)):
            records.append(RunRecord(label, seed, {"task": "t"}, {"bleu": 50.0, "best_step": 0.0}))
            curves.append({"algorithm": label, "seed": seed, "from_scratch": False,
                           "points": [{"step": 0, "valid_bleu": 50.0}, {"step": 32, "valid_bleu": 50.0 - fall},
                                      {"step": 64, "valid_bleu": 49.0}]})
        curves.append({"algorithm": "erac_critic", "seed": seed, "from_scratch": False,
                       "points": [{"step": 32, "valid_critic": 0.3}]})
    write_results("seq2seq", "cpu", "2026-01-01", records, tmp_path)
    results = tmp_path / "ablation_results.json"
    (tmp_path / "results.json").rename(results)
    (tmp_path / "ablation_curves.json").write_text(json.dumps(curves))
    out = _run(verdicts, monkeypatch, capsys, "--ablation", str(results))
    row = _claim_line(out, "keeps training from diverging (β 0.1 vs 1)")
    assert row[4] == f"{1.15 - 26.5:+.3g}" and row[-1] == "**reproduced**" and row[-2] == "4/4"
    same_bleu = _claim_line(out, "target network helps (β 0.1 > 1)")
    assert same_bleu[-1] == "not separated"
