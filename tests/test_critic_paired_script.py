"""benchmarks/critic_paired.py: issue #14's paired differences, read from a seq2seq results.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from seqrl.bench.store import write_results
from seqrl.bench.suite import RunRecord

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "critic_paired.py"


def test_paired_differences_per_seed_with_kept_start_and_curves(tmp_path):
    """ERAC − AC is paired by seed (not by row order), a best step of 0 counts as a kept start, and the curves'
    critic loss is averaged over seeds."""
    bleu = {"mle": (50.0, 60.0), "ac": (51.0, 58.0), "erac": (52.0, 61.0)}
    records = [RunRecord(a, seed, {"task": "toy"}, {"bleu": bleu[a][seed], "best_step": 0.0 if a == "ac" else 8.0})
               for seed in (1, 0) for a in bleu]  # seeds out of order on purpose
    write_results("seq2seq", "cpu", "2026-01-01", records, tmp_path)
    curves = [{"algorithm": "erac", "seed": s, "from_scratch": False,
               "points": [{"step": 0, "valid_bleu": 10.0}, {"step": 8, "valid_bleu": 11.0 + s, "critic_loss": 0.2 + s}]}
              for s in (0, 1)]
    (tmp_path / "seq2seq_curves.json").write_text(json.dumps(curves))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "results.json")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if row.startswith("erac − ac"))
    assert "+2.00" in line and "+1.00, +3.00" in line and "2/2" in line  # seed 0: 52 − 51, seed 1: 61 − 58
    ac = next(row for row in out.stdout.splitlines() if row.startswith("ac "))
    assert "51.0, 58.0" in ac and " 2 " in ac  # two kept starts
    curve_rows = out.stdout.split("Fine-tuning curves")[1].splitlines()
    erac_curve = next(row for row in curve_rows if row.startswith("erac") and " 8 " in row)
    assert "+1.50" in erac_curve and "0.7" in erac_curve  # gains 1 and 2, losses 0.2 and 1.2


def test_empty_results_fail_with_one_line(tmp_path):
    write_results("seq2seq", "cpu", "2026-01-01", [], tmp_path)
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "results.json")], capture_output=True,
                         text=True)
    assert out.returncode != 0 and "no runs in" in out.stderr
