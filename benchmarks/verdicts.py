"""Issue #24's verdict table: each claim of the four papers against our runs, paired per seed.

    python benchmarks/verdicts.py --erpo E/results.json --critics C/results.json --ablation A/results.json \
        --gam G/results.json --control docs/figures/control_quick_results.json

Every argument is optional; the claims of the files given are printed as one Markdown table. A claim "A beats B"
is read on the differences A − B over the pairs that share a seed (and, in the GAM and control suites, a
configuration): their mean, a 95% Student t interval over the pairs, the 95% percentile bootstrap interval
(:mod:`seqrl.bench.stats`; with few pairs it is narrower than the t interval) and the wins. The verdict uses the t
interval: **reproduced** when it excludes 0 in the paper's direction, **contradicted** when it excludes 0 in the
other, **not separated** otherwise. DPG Table 1's ratios are read per configuration (motif × features × seed at one
|D|) against 1. ``--per-seed`` adds each claim's per-pair values. ``--erpo-other E2/results.json`` (and
``--critics-other``, ``--ablation-other``) prints instead the replication table: each claim on the documented seeds
beside the same claim on other seeds, and whether they agree.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seqrl.bench.records import RunRecord
from seqrl.bench.seq2seq_presets import ablation_label
from seqrl.bench.stats import bootstrap_interval, t_interval, t_quantile_975
from seqrl.bench.store import read_results


@dataclass(frozen=True)
class Claim:
    paper: str
    text: str
    suite: str
    """Which results file: erpo, critics, ablation, gam, control."""
    row: str
    reference: str
    metric: str
    direction: int
    """+1: the paper has ``row`` above ``reference`` on ``metric``; −1: below."""
    figure: str
    """The paper's numbers."""
    where: Callable[[RunRecord], bool] | None = None
    """Which records (configurations) the claim reads; None: all."""


def _params(**wanted) -> Callable[[RunRecord], bool]:
    return lambda r: all(r.params.get(k) == v for k, v in wanted.items())


ERPO = "ERPO T1"
CRIT = "VAML/ERAC T1"
CLAIMS: list[Claim] = [
    Claim(ERPO, "RAML > MLE", "erpo", "raml", "mle", "bleu", +1, "27.22 vs 26.44 (+0.78)"),
    Claim(ERPO, "interpolation > MLE", "erpo", "interpolation", "mle", "bleu", +1, "27.82 vs 26.44 (+1.38)"),
    Claim(ERPO, "interpolation > RAML", "erpo", "interpolation", "raml", "bleu", +1, "27.82 vs 27.22 (+0.60)"),
    Claim(ERPO, "scheduled sampling > MLE", "erpo", "scheduled_sampling", "mle", "bleu", +1, "26.76 vs 26.44 (+0.32)"),
    Claim(ERPO, "SPG > MLE", "erpo", "spg", "mle", "bleu", +1, "26.62 vs 26.44 (+0.18)"),
    Claim(ERPO, "SPG > MLE, equal budget", "erpo", "spg", "mle_continued", "bleu", +1, "(as above)"),
    Claim(ERPO, "MIXER > MLE", "erpo", "mixer", "mle", "bleu", +1, "26.53 vs 26.44 (+0.09)"),
    Claim(ERPO, "MIXER > MLE, equal budget", "erpo", "mixer", "mle_continued", "bleu", +1, "(as above)"),
    Claim(ERPO, "interpolation > scheduled sampling", "erpo", "interpolation", "scheduled_sampling", "bleu", +1,
          "27.82 vs 26.76 (+1.06)"),
    Claim(CRIT, "VAML > RAML", "critics", "vaml", "raml", "bleu", +1, "28.84 vs 28.56 (+0.28)"),
    Claim(CRIT, "ERAC > AC", "critics", "erac", "ac", "bleu", +1, "29.31 vs 29.05 (+0.26)"),
    Claim(CRIT, "RAML > MLE", "critics", "raml", "mle", "bleu", +1, "28.56 vs 28.06 (+0.50)"),
    Claim(CRIT, "VAML > MLE", "critics", "vaml", "mle", "bleu", +1, "28.84 vs 28.06 (+0.78)"),
    Claim(CRIT, "AC > MLE", "critics", "ac", "mle", "bleu", +1, "29.05 vs 28.06 (+0.99)"),
    Claim(CRIT, "AC > MLE, equal budget", "critics", "ac", "mle_continued", "bleu", +1, "(as above)"),
    Claim(CRIT, "ERAC > MLE", "critics", "erac", "mle", "bleu", +1, "29.31 vs 28.06 (+1.25)"),
    Claim(CRIT, "ERAC > MLE, equal budget", "critics", "erac", "mle_continued", "bleu", +1, "(as above)"),
    Claim("VAML/ERAC T4", "ERAC > ERAC w/o future entropy", "critics", "erac", "erac[no future entropy]", "bleu",
          +1, "28.30 vs 28.06 (+0.24)"),
    Claim("VAML/ERAC T4", "ERAC w/o future entropy ≈ AC", "critics", "erac[no future entropy]", "ac", "bleu", 0,
          "28.06 vs 28.04 (+0.02)"),
    Claim("GDC++ Fig. 3", "GDC++ closer to p than GDC: KL(p‖π)", "control", "gdcpp", "dpg_off", "kl_p_pi", -1,
          "lower on tasks 1–10", _params(experiment="main")),
    Claim("GDC++ Fig. 3", "REINFORCE drifts further from a: KL(π‖a)", "control", "reinforce", "gdcpp", "kl_pi_a", +1,
          "much higher", _params(experiment="main")),
    Claim("GDC++ Fig. 3", "REINFORCE less diverse: Distinct-1", "control", "reinforce", "gdcpp", "distinct_1", -1,
          "lower", _params(experiment="main")),
    Claim("GDC++ Fig. 3", "KL-control between: KL(π‖a) above GDC++", "control", "kl_control", "gdcpp", "kl_pi_a", +1,
          "between", _params(experiment="main")),
    Claim("GDC++ Fig. 3", "KL-control between: KL(π‖a) below REINFORCE", "control", "kl_control", "reinforce",
          "kl_pi_a", -1, "between", _params(experiment="main")),
    Claim("GDC++ Fig. 4", "GDC++ < GDC in KL(p‖π) at every batch size", "control", "gdcpp", "dpg_off", "kl_p_pi", -1,
          "every batch size", _params(experiment="sweep")),
    Claim("GDC++ Fig. 5", "GDC++ lower Var(A)", "control", "gdcpp", "dpg_off", "var_a", -1, "lower",
          _params(experiment="main")),
    Claim("GDC++ Fig. 5", "GDC++ lower Var(G)", "control", "gdcpp", "dpg_off", "var_g", -1, "lower",
          _params(experiment="main")),
    Claim("DPG T1 (issue)", "GDC++ vs DPG_off, same clipping: CE(T, π)", "gam", "gdcpp", "dpg_off", "ce_test", 0,
          "—", lambda r: r.params.get("features") != "-"),
]

ERAC_TABLE3 = {(0.0, 0.001): 27.91, (0.0, 0.01): 26.27, (0.0, 0.1): 28.88, (0.0, 1.0): 27.38,
               (0.001, 0.001): 29.41, (0.001, 0.01): 29.26, (0.001, 0.1): 29.32, (0.001, 1.0): 27.44}
"""[VAML/ERAC] Table 3: average validation BLEU of ERAC per (λ_var, β); MLE 28.1."""
DIVERGED = {(0.0, 0.01), (0.0, 1.0)}
"""Table 3's † cells: extreme values excluded "due to divergence"."""


def table3_claims() -> list[Claim]:
    """Table 3's claims (smoothing helps at every β; a target network helps against β = 1) on test BLEU, and §6.4's
    (without a target network, or without smoothing at β ∈ {0.01, 1}, training diverges) on ``valid_fall``."""
    def cell(lambda_var: float, beta: float) -> str:
        return f"{ERAC_TABLE3[lambda_var, beta]:.2f}{'†' if (lambda_var, beta) in DIVERGED else ''}"

    label, smooth, none = ablation_label, 0.001, 0.0
    claims = [Claim("VAML/ERAC T3", f"smoothing helps, β = {b:g}", "ablation", label(b, smooth), label(b, none),
                    "bleu", +1, f"{cell(smooth, b)} vs {cell(none, b)} (valid.)") for b in (0.001, 0.01, 0.1, 1.0)]
    claims += [Claim("VAML/ERAC T3", f"target network helps (β {b:g} > 1)", "ablation", label(b, smooth),
                     label(1.0, smooth), "bleu", +1, f"{cell(smooth, b)} vs {cell(smooth, 1.0)} (valid.)")
               for b in (0.001, 0.01, 0.1)]
    claims += [Claim("VAML/ERAC §6.4", f"the target network keeps training from diverging (β {b:g} vs 1)",
                     "ablation", label(b, smooth), label(1.0, smooth), "valid_fall", -1,
                     f"β = 1 under MLE ({cell(smooth, 1.0)} vs 28.1)") for b in (0.1, 0.01, 0.001)]
    claims += [Claim("VAML/ERAC §6.4", f"smoothing keeps training from diverging (β = {b:g})", "ablation",
                     label(b, smooth), label(b, none), "valid_fall", -1, "λ_var = 0 'often diverges'")
               for b in (0.01, 1.0)]
    return claims


_before_table4 = next(i for i, c in enumerate(CLAIMS) if c.paper == "VAML/ERAC T4")
CLAIMS[_before_table4:_before_table4] = table3_claims()

DPG_TABLE1 = {500: {"CE dpg/dis": 1.008, "CE dpg/r": 0.76, "CE dpg/H": 1.18, "mtf dpg/r": 281.51},
              1000: {"CE dpg/dis": 1.014, "CE dpg/r": 0.762, "CE dpg/H": 1.178, "mtf dpg/r": 240.40},
              5000: {"CE dpg/dis": 1.019, "CE dpg/r": 0.865, "CE dpg/H": 1.059, "mtf dpg/r": 34.73}}
"""[DPG] Table 1 (means over 12 configurations per |D|); 2000 is not in it."""


def paired(records: list[RunRecord], claim: Claim) -> list[float]:
    """``row − reference`` per pair (same seed, same configuration) on the claim's metric."""
    chosen = [r for r in records if claim.where is None or claim.where(r)]
    pairs: list[float] = []
    for r in chosen:
        if r.algorithm != claim.row or claim.metric not in r.metrics:
            continue
        for ref in chosen:
            if ref.algorithm == claim.reference and ref.seed == r.seed and claim.metric in ref.metrics and \
                    all(ref.params.get(k) == v for k, v in r.params.items() if k in ref.params and v != "-"
                        and ref.params.get(k) != "-"):
                pairs.append(float(r.metrics[claim.metric]) - float(ref.metrics[claim.metric]))
                break
    return pairs


def verdict(lo: float, hi: float, direction: int) -> str:
    if math.isnan(lo):
        return "—"
    if direction == 0:
        return "not separated (as claimed)" if lo <= 0 <= hi else "**separated** (paper: a tie)"
    if (direction > 0 and lo > 0) or (direction < 0 and hi < 0):
        return "**reproduced**"
    if (direction > 0 and hi < 0) or (direction < 0 and lo > 0):
        return "**contradicted**"
    return "not separated"


def summary(records: list[RunRecord], name: str, metric: str, where=None) -> str:
    vals = [float(r.metrics[metric]) for r in records if r.algorithm == name and metric in r.metrics
            and (where is None or where(r))]
    if not vals:
        return "—"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.3g} ± {sd:.2g}"


def claim_row(records: list[RunRecord], claim: Claim, per_seed: bool) -> list[str] | None:
    d = paired(records, claim)
    if not d:
        return None
    t_lo, t_hi = t_interval(d)
    b_lo, b_hi = bootstrap_interval(d)
    better = sum(x * claim.direction > 0 for x in d) if claim.direction else sum(x > 0 for x in d)
    ours = f"{summary(records, claim.row, claim.metric, claim.where)} vs " \
           f"{summary(records, claim.reference, claim.metric, claim.where)}"
    cells = [claim.paper, f"{claim.text} ({claim.row} − {claim.reference}, {claim.metric})", claim.figure, ours,
             f"{statistics.fmean(d):+.3g}", f"[{t_lo:+.3g}, {t_hi:+.3g}]", f"[{b_lo:+.3g}, {b_hi:+.3g}]",
             f"{better}/{len(d)}", verdict(t_lo, t_hi, claim.direction)]
    if per_seed:
        cells.append(", ".join(f"{x:+.2f}" for x in d))
    return cells


def gam_rows(records: list[RunRecord], dpg: str = "dpg_off", dis: str = "distill") -> list[list[str]]:
    """[DPG] Table 1's ratios per |D| over the configurations (motif × features × seed), with intervals."""
    key = lambda r: (r.params["motif"], r.params["features"], r.seed, r.params["dataset_size"])  # noqa: E731
    by = {a: {key(r): r.metrics for r in records if r.algorithm == a} for a in (dpg, dis)}
    rows = []
    for size in sorted({r.params["dataset_size"] for r in records}):
        keys = [k for k in by[dpg] if k[3] == size and k in by[dis]]
        if not keys:
            continue
        P, S = by[dpg], by[dis]
        ratios = {
            "CE dpg/dis": ([P[k]["ce_test"] / S[k]["ce_test"] for k in keys], -1),
            "CE dpg/r": ([P[k]["ce_test"] / P[k]["ce_r"] for k in keys], -1),
            "CE dis/r": ([S[k]["ce_test"] / S[k]["ce_r"] for k in keys], -1),
            "CE dpg/H": ([P[k]["ce_test"] / P[k]["h_true"] for k in keys], 0),
            "mtf dpg/r": ([max(P[k]["motif_freq"], 1e-6) / max(P[k]["motif_freq_r"], 1e-6) for k in keys], +1),
        }
        for name, (vals, direction) in ratios.items():
            lo, hi = t_interval(vals)
            b_lo, b_hi = bootstrap_interval(vals)
            paper = DPG_TABLE1.get(size, {}).get(name)
            below = sum(v < 1 for v in vals)
            if direction == 0:
                text = "—"
            else:
                text = verdict(lo - 1, hi - 1, direction)
            rows.append([f"DPG T1 |D|={size}", f"{name} vs 1", f"{paper:.4g}" if paper else "(not in Table 1)",
                         f"{statistics.fmean(vals):.4g} (n={len(vals)})", f"{statistics.fmean(vals) - 1:+.3g}",
                         f"[{lo:.4g}, {hi:.4g}]", f"[{b_lo:.4g}, {b_hi:.4g}]", f"{below}/{len(vals)} < 1", text])
    return rows


def curves_beside(results: Path) -> Path | None:
    """The seq2seq curves of a results file: ``seq2seq_curves.json`` in a run's folder, or ``NAME_curves.json``
    beside ``NAME_results.json`` (docs/figures)."""
    for candidate in (results.with_name(results.name.replace("_results.json", "_curves.json")),
                      results.parent / "seq2seq_curves.json"):
        if candidate != results and candidate.exists():
            return candidate
    return None


def with_falls(records: list[RunRecord], curves: Path | None) -> list[RunRecord]:
    """The records with ``valid_fall``: how far a fine-tuning row's validation BLEU fell below its start at its
    worst evaluation (start − min), the divergence [VAML/ERAC] §6.4 speaks of; the returned checkpoint, chosen
    on validation BLEU, hides it from the test score."""
    if curves is None:
        return records
    falls = {}
    for curve in json.loads(curves.read_text()):
        points = [p["valid_bleu"] for p in curve["points"] if "valid_bleu" in p]
        if points and not curve.get("from_scratch") and not curve["algorithm"].endswith("_critic"):
            falls[(curve["algorithm"], curve["seed"])] = points[0] - min(points)
    return [RunRecord(r.algorithm, r.seed, r.params,
                      {**r.metrics, "valid_fall": falls[(r.algorithm, r.seed)]} if (r.algorithm, r.seed) in falls
                      else r.metrics) for r in records]


ROW_METRICS = ("bleu", "exposure_drop", "length_ratio", "steps", "best_step", "valid_fall", "critic_steps",
               "critic_valid",
               "wall_s", "critic_wall_s")


def row_summary(path: Path) -> str:
    """Per row of a seq2seq run: mean ± sd of its metrics over seeds, the seeds whose checkpoint is the start
    (fine-tuning never beat it on validation), and interpolation's final λ (from ``seq2seq_curves.json``)."""
    records = with_falls(read_results(path)["records"], curves_beside(path))
    header = ["row", "seeds", *ROW_METRICS, "kept start", "fell > 10 BLEU"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for algo in dict.fromkeys(r.algorithm for r in records):
        rs = [r for r in records if r.algorithm == algo]
        cells = [algo, str(len(rs))]
        for m in ROW_METRICS:
            vals = [float(r.metrics[m]) for r in rs if m in r.metrics]
            cells.append(f"{statistics.fmean(vals):.4g} ± {statistics.stdev(vals):.2g}" if len(vals) > 1 else
                         (f"{vals[0]:.4g}" if vals else "—"))
        cells.append(str(sum(r.metrics.get("best_step", -1) == 0 for r in rs)))
        cells.append(str(sum(r.metrics.get("valid_fall", 0.0) > 10 for r in rs)))
        lines.append("| " + " | ".join(cells) + " |")
    curves = curves_beside(path)
    if curves is not None:
        finals = [c["points"][-1] for c in json.loads(curves.read_text())
                  if c["algorithm"] == "interpolation" and c["points"]]
        if finals:
            lam = [tuple(p.get(f"lambda{i}", math.nan) for i in (1, 2, 3)) for p in finals]
            lines.append("\ninterpolation's λ at its last evaluation, per seed: "
                         + "; ".join("(" + ", ".join(f"{x:.2f}" for x in t) + ")" for t in lam))
    return "\n".join(lines)


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """95% Welch interval of mean(b) − mean(a) for two independent samples (Welch–Satterthwaite degrees of
    freedom, rounded down: the wider, conservative quantile)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(b) - statistics.fmean(a)
    if va + vb == 0:
        return diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile_975(max(1, math.floor(df))) * math.sqrt(va + vb)
    return diff - half, diff + half


def replication_row(first: list[RunRecord], other: list[RunRecord], claim: Claim) -> list[str] | None:
    """A claim read on the documented seeds and on other seeds: each one's paired mean, t interval and verdict,
    whether the verdicts are the same, and whether the Welch interval of the two means' difference covers 0 (the
    other seeds do not measure a different effect; fewer seeds may still leave a verdict unreached)."""
    d1, d2 = paired(first, claim), paired(other, claim)
    if len(d1) < 2 or len(d2) < 2:
        return None
    cells = [claim.paper, f"{claim.text} ({claim.row} − {claim.reference}, {claim.metric})"]
    verdicts = []
    for d in (d1, d2):
        lo, hi = t_interval(d)
        verdicts.append(verdict(lo, hi, claim.direction))
        cells += [f"{statistics.fmean(d):+.3g} [{lo:+.3g}, {hi:+.3g}] (n={len(d)})", verdicts[-1]]
    w_lo, w_hi = welch_interval(d1, d2)
    cells += [f"[{w_lo:+.3g}, {w_hi:+.3g}]", "yes" if verdicts[0] == verdicts[1] else "**no**",
              "yes" if w_lo <= 0 <= w_hi else "**no**"]
    return cells


def replication_table(pairs: list[tuple[str, Path, Path]], no_brevity_penalty: bool = False) -> str:
    """The replication table over (suite, documented results, other seeds' results), BLEU optionally without
    its brevity penalty."""
    header = ["paper", "claim (row − reference, metric)", "documented seeds: Δ [95% t CI]", "verdict",
              "other seeds: Δ [95% t CI]", "verdict", "other − documented (95% Welch CI)",
              "same verdict", "Welch CI covers 0"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for suite, first_path, other_path in pairs:
        first, other = (with_falls(read_results(path)["records"], curves_beside(path))
                        for path in (first_path, other_path))
        if no_brevity_penalty:
            first, other = without_brevity_penalty(first), without_brevity_penalty(other)
        for claim in CLAIMS:
            if claim.suite == suite and (row := replication_row(first, other, claim)) is not None:
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def brevity_penalty(length_ratio: float) -> float:
    """BLEU's brevity penalty at a corpus length ratio c/r (Papineni et al. 2002): exp(min(0, 1 − 1/ratio))."""
    return math.exp(min(0.0, 1.0 - 1.0 / length_ratio))


def without_brevity_penalty(records: list[RunRecord]) -> list[RunRecord]:
    """The records with ``bleu`` divided by its brevity penalty (the n-gram precisions' part of BLEU): a claim
    that turns on this metric turned on output length, not on which tokens were emitted."""
    out = []
    for r in records:
        metrics = dict(r.metrics)
        if "bleu" in metrics and metrics.get("length_ratio"):
            metrics["bleu"] = metrics["bleu"] / brevity_penalty(float(metrics["length_ratio"]))
        out.append(RunRecord(r.algorithm, r.seed, r.params, metrics))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for suite in ("erpo", "critics", "ablation", "gam", "control"):
        parser.add_argument(f"--{suite}", type=Path, help=f"results.json of the {suite} run")
    parser.add_argument("--per-seed", action="store_true", help="add each claim's per-pair differences")
    parser.add_argument("--no-brevity-penalty", action="store_true",
                        help="read BLEU claims on BLEU divided by its brevity penalty (n-gram precisions only)")
    for suite in ("erpo", "critics", "ablation"):
        parser.add_argument(f"--{suite}-other", type=Path,
                            help=f"results.json of the {suite} run on other seeds: print the replication table")
    parser.add_argument("--rows", type=Path, action="append", default=[],
                        help="also print a seq2seq run's per-row summary (repeatable)")
    args = parser.parse_args()
    for path in args.rows:
        print(f"{path}:\n{row_summary(path)}\n")
    replications = [(suite, getattr(args, suite), getattr(args, f"{suite}_other")) for suite in
                    ("erpo", "critics", "ablation") if getattr(args, f"{suite}_other") is not None]
    if replications:
        if any(first is None for _, first, _ in replications):
            parser.error("--SUITE-other needs --SUITE (the documented run) beside it")
        print(replication_table(replications, args.no_brevity_penalty))
        return
    header = ["paper", "claim (row − reference, metric)", "paper's figure", "ours: row vs reference (mean ± sd)",
              "Δ mean", "95% t CI", "95% bootstrap CI", "in the paper's direction", "verdict"]
    if args.per_seed:
        header.append("per pair")
    rows: list[list[str]] = []
    for suite in ("erpo", "critics", "ablation", "control", "gam"):
        path = getattr(args, suite)
        if path is None:
            continue
        records = read_results(path)["records"]
        if suite in ("erpo", "critics", "ablation"):
            records = with_falls(records, curves_beside(path))
        records = sorted(records, key=lambda r: r.seed)
        if args.no_brevity_penalty:
            records = without_brevity_penalty(records)
        for claim in CLAIMS:
            if claim.suite == suite and (row := claim_row(records, claim, args.per_seed)) is not None:
                rows.append(row)
        if suite == "gam":
            rows += [r + ([""] if args.per_seed else []) for r in gam_rows(records)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
