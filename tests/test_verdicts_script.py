"""benchmarks/verdicts.py: issue #24's verdict and replication tables, read from seq2seq results files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from seqrl.bench.store import write_results
from seqrl.bench.suite import RunRecord

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "verdicts.py"


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


def test_replication_table_tells_a_repeated_effect_from_a_different_one(tmp_path):
    """Interpolation − MLE is +1 on the documented seeds: other seeds at +1 agree (same verdict, the Welch interval
    of the difference covers 0); other seeds at −1 do not (contradicted, and the interval excludes 0)."""
    documented = _erpo_run(tmp_path / "docs", range(10), +1.0)
    rows = {}
    for name, gain in (("same", +1.0), ("reversed", -1.0)):
        other = _erpo_run(tmp_path / name, range(10, 15), gain)
        out = subprocess.run([sys.executable, str(SCRIPT), "--erpo", str(documented), "--erpo-other", str(other)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        rows[name] = _claim_line(out.stdout, "interpolation > MLE")
    assert rows["same"][3] == rows["same"][5] == "**reproduced**"
    assert rows["same"][-2:] == ["yes", "yes"]
    assert rows["reversed"][5] == "**contradicted**"
    assert rows["reversed"][-2:] == ["**no**", "**no**"]
    assert "(n=5)" in rows["same"][4] and "(n=10)" in rows["same"][2]


def test_welch_interval_matches_the_textbook_formula():
    """Two samples of equal size and variance: Welch's df is 2(n − 1) and the half-width t·√(2s²/n)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import verdicts
    finally:
        sys.path.pop(0)
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]  # s² = 5/3 each, df = 6 exactly
    lo, hi = verdicts.welch_interval(a, b)
    half = 2.447 * (2 * (5 / 3) / 4) ** 0.5
    assert abs((lo + hi) / 2 - 2.0) < 1e-12 and abs((hi - lo) / 2 - half) < 1e-12
