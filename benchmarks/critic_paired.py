"""Issue #14's paired comparisons of the critic family on one seq2seq ``results.json``.

    python benchmarks/critic_paired.py runs/s2s-critics/results.json

Per seed, every row starts from the same pretrained policy on the same data, so a row's test BLEU minus
another's on the same seed isolates the objectives. Prints test BLEU mean ± std per row, the per-seed
pretrained BLEU, and for each pair (ERAC − AC, VAML − RAML, ERAC − MLE, VAML − MLE, AC − MLE, RAML − MLE)
the mean paired difference, its 95% percentile-bootstrap interval
(:func:`seqrl.bench.stats.bootstrap_interval`) and the wins.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from seqrl.bench.stats import bootstrap_interval, format_table, paired_differences
from seqrl.bench.store import read_results

PAIRS = (("erac", "ac"), ("vaml", "raml"), ("erac", "mle"), ("vaml", "mle"), ("ac", "mle"), ("raml", "mle"))
"""(row, reference) pairs: issue #14's targets ERAC ≥ AC, VAML ≥ RAML, both ≥ MLE, and the references' own gains."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a seq2seq results.json")
    parser.add_argument("--metric", default="bleu")
    args = parser.parse_args()
    records = sorted(read_results(args.results)["records"], key=lambda r: r.seed)  # per-seed lists in seed order
    if not records:
        raise SystemExit(f"no runs in {args.results}")
    rows = []
    for algo in dict.fromkeys(r.algorithm for r in records):
        vals = [r.metrics[args.metric] for r in records if r.algorithm == algo]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        best = [int(r.metrics.get("best_step", -1)) for r in records if r.algorithm == algo]
        rows.append([algo, len(vals), f"{statistics.fmean(vals):.2f} ± {sd:.2f}", ", ".join(f"{v:.1f}" for v in vals),
                     sum(b == 0 for b in best), ", ".join(map(str, best))])
    # best step 0: fine-tuning never beat its starting policy on validation and returned it unchanged
    print(format_table(["row", "seeds", f"test {args.metric}", "per seed (ascending seed)", "kept start",
                        "best step per seed"], rows))
    pair_rows = []
    for algo, reference in PAIRS:
        diffs = paired_differences(records, args.metric, reference).get(algo)
        if not diffs:
            continue
        lo, hi = bootstrap_interval(diffs)
        wins = sum(d > 0 for d in diffs)
        pair_rows.append([f"{algo} − {reference}", len(diffs), f"{statistics.fmean(diffs):+.2f}",
                          f"[{lo:+.2f}, {hi:+.2f}]", f"{wins}/{len(diffs)}", ", ".join(f"{d:+.2f}" for d in diffs)])
    print(format_table(["pair", "seeds", f"Δ{args.metric}", "95% bootstrap CI", "wins", "per seed"], pair_rows))
    curves_path = args.results.parent / "seq2seq_curves.json"
    if curves_path.exists():
        print(curve_summary(json.loads(curves_path.read_text())))


def curve_summary(curves: list[dict]) -> str:
    """Per fine-tuning row and evaluation step, over seeds: mean validation BLEU minus the starting policy's
    and the mean critic loss on the last training batch before it (ERAC/AC: TD error, VAML: soft Q loss)."""
    rows = []
    for algo in dict.fromkeys(c["algorithm"] for c in curves if not c.get("from_scratch")):
        runs = [c["points"] for c in curves if c["algorithm"] == algo and c["points"]]
        for i, point in enumerate(runs[0]):
            reached = [r for r in runs if len(r) > i]  # early stopping may end some seeds' runs sooner
            gain = statistics.fmean(r[i]["valid_bleu"] - r[0]["valid_bleu"] for r in reached)
            known = [x for r in reached if (x := r[i].get("critic_loss", r[i].get("q_loss"))) is not None]
            loss = f"{statistics.fmean(known):.4g}" if known else "-"
            rows.append([algo, point["step"], len(reached), f"{gain:+.2f}", loss])
    return ("Fine-tuning curves, mean over seeds (valid BLEU greedy, minus the start):\n"
            + format_table(["row", "step", "seeds", "Δ valid BLEU", "critic loss"], rows))


if __name__ == "__main__":
    main()
