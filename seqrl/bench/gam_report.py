"""The GAM suite's report: [DPG] Table 1's ratio columns and the Figure 2-style plots."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from .records import RunRecord
from .stats import bootstrap_interval, format_table, t_interval


def plot_gam(records: list[RunRecord], curves: list[dict[str, Any]], out: Path, reference: str = "mle") -> list[Path]:
    """``gam_ce_vs_D.png``: CE(T, ·) and motif frequency against |D|, one panel pair per motif;
    ``gam_kl_curves.png``: estimated KL(p_λ‖π) against episodes, one panel per |D|. Seeds are a mean
    line with a min–max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import BAND_NOTE, seed_band

    paths = []
    motifs = list(dict.fromkeys(r.params["motif"] for r in records))
    algos = list(dict.fromkeys(r.algorithm for r in records))
    colors = {a: f"C{i % 10}" for i, a in enumerate(algos)}
    masks = list(dict.fromkeys(r.params["features"] for r in records if r.params["features"] != "-"))
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(2, len(motifs), figsize=(5.5 * len(motifs), 7.5), squeeze=False, sharex=True)
    for col, motif in enumerate(motifs):
        ce_ax, mf_ax = axes[0][col], axes[1][col]
        rows = [r for r in records if r.params["motif"] == motif]
        for algo in algos:
            for mask in ["-"] if algo == reference else masks:
                runs = [r for r in rows if r.algorithm == algo and r.params["features"] == mask]
                if not runs:
                    continue
                label = f"r ({algo})" if algo == reference else \
                    (f"{algo} [{mask}]" if len(masks) > 1 else algo)
                style = styles[masks.index(mask) % len(styles)] if mask in masks else "-"
                for ax, key in ((ce_ax, "ce_test"), (mf_ax, "motif_freq")):
                    series = [[(r.params["dataset_size"], r.metrics.get(key)) for r in runs if r.seed == seed]
                              for seed in dict.fromkeys(r.seed for r in runs)]
                    seed_band(ax, series, label=label, color=colors[algo], linestyle=style, marker="o")
        sizes = sorted({r.params["dataset_size"] for r in rows})
        ce_ax.plot(sizes, [_mean([r.metrics["h_true"] for r in rows if r.params["dataset_size"] == d])
                           for d in sizes], "k:", label="H(p_true)")
        ce_ax.set_title(f"motif {motif}: test cross-entropy")
        ce_ax.set_ylabel("CE(T, ·) (nats per sequence)")
        mf_ax.set_title(f"motif {motif}: samples holding the motif")
        mf_ax.set_ylabel("motif frequency (fraction of samples)")
        mf_ax.set_xlabel("|D| (training sequences, log scale)")
        mf_ax.set_ylim(-0.02, 1.02)
        for ax in (ce_ax, mf_ax):
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(d) for d in sizes])  # the grid's |D| values, not powers of ten
            ax.minorticks_off()
            ax.grid(alpha=0.3)
        ce_ax.legend(fontsize=7)
    fig.suptitle(f"GAM motif task: Training-2 policies against r (cf. [DPG] Fig. 2)\n{BAND_NOTE}", fontsize=10)
    fig.tight_layout()
    paths.append(out / "gam_ce_vs_D.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if curves:
        (out / "gam_curves.json").write_text(json.dumps(curves, indent=1))
        sizes = sorted({c["dataset_size"] for c in curves})
        cols = min(3, len(sizes))
        rows_n = -(-len(sizes) // cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(5.5 * cols, 4.2 * rows_n), squeeze=False)
        # Distillation draws its samples before training (its episodes never move): no curve against episodes.
        drawn_upfront = {c["algorithm"] for c in curves if len({p.get("episodes") for p in c["points"]}) == 1
                         and len(c["points"]) > 1}
        groups = list(dict.fromkeys((c["algorithm"], c["features"]) for c in curves
                                    if c["algorithm"] not in drawn_upfront))
        curve_masks = list(dict.fromkeys(m for _, m in groups))
        for i, size in enumerate(sizes):
            ax = axes[i // cols][i % cols]
            for algo, mask in groups:
                series = [[(p["episodes"], max(p["kl_p_pi"], 1e-4)) for p in c["points"]
                           if "kl_p_pi" in p and "episodes" in p]
                          for c in curves
                          if c["dataset_size"] == size and (c["algorithm"], c["features"]) == (algo, mask)]
                label = f"{algo} [{mask}]" if len(curve_masks) > 1 else algo
                seed_band(ax, series, label=label, color=colors.get(algo),
                          linestyle=styles[curve_masks.index(mask) % len(styles)])
            ax.set_yscale("log")
            ax.set_title(f"|D| = {size}")
            ax.set_xlabel("episodes (sequences sampled)")
            ax.set_ylabel("estimated KL(p_λ‖π) (nats; floor 1e-4)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for j in range(len(sizes), rows_n * cols):
            axes[j // cols][j % cols].set_visible(False)
        spread = "seeds and motifs" if len({c["motif"] for c in curves}) > 1 else "seeds"
        fig.suptitle(f"Training-2 learning curves toward p_λ; line: mean over {spread}; band: min–max\n"
                     "(importance-sampling estimates below 1e-4, negative ones included, are drawn at 1e-4)",
                     fontsize=10)
        fig.tight_layout()
        paths.append(out / "gam_kl_curves.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
        paths.append(out / "gam_curves.json")
    return paths


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _interval(values: list[float]) -> str:
    """``[lo, hi] t / [lo, hi] boot``: the 95% Student t and percentile bootstrap intervals of the mean."""
    if len(values) < 2:
        return "—"
    t_lo, t_hi = t_interval(values)
    b_lo, b_hi = bootstrap_interval(values)
    return f"[{t_lo:.4g}, {t_hi:.4g}] t / [{b_lo:.4g}, {b_hi:.4g}] boot"


def table1(records: list[RunRecord], dpg: str = "dpg_off", dis: str = "distill") -> str:
    """The ratio columns of [DPG] Table 1 per |D| (means over motif × features × seed), plus
    absolute CEs and the 95% intervals (t over the configurations, and bootstrap) of CE dpg/dis and CE dpg/r.
    Ratios pair runs with the same motif, features, seed and |D|."""
    key = lambda r: (r.params["motif"], r.params["features"], r.seed, r.params["dataset_size"])  # noqa: E731
    by_algo = {a: {key(r): r.metrics for r in records if r.algorithm == a} for a in (dis, dpg)}
    rows = []
    for d in sorted({r.params["dataset_size"] for r in records}):
        keys = [k for k in by_algo[dpg] if k[3] == d and k in by_algo[dis]]
        if not keys:
            continue
        P, S = by_algo[dpg], by_algo[dis]
        freq = lambda m, k: max(m[k], 1e-6)  # noqa: E731
        ce_dis = [P[k]["ce_test"] / S[k]["ce_test"] for k in keys]
        ce_r = [P[k]["ce_test"] / P[k]["ce_r"] for k in keys]
        rows.append([
            d,
            len(keys),
            _mean(ce_dis),
            _interval(ce_dis),
            _mean([freq(P[k], "motif_freq") / freq(S[k], "motif_freq") for k in keys]),
            _mean(ce_r),
            _interval(ce_r),
            _mean([P[k]["ce_test"] / P[k]["h_true"] for k in keys]),
            _mean([freq(P[k], "motif_freq") / freq(P[k], "motif_freq_r") for k in keys]),
            _mean([S[k]["ce_test"] / S[k]["ce_r"] for k in keys]),
            _mean([freq(S[k], "motif_freq") / freq(S[k], "motif_freq_r") for k in keys]),
            _mean([P[k]["ce_test"] for k in keys]),
            _mean([S[k]["ce_test"] for k in keys]),
            _mean([P[k]["ce_r"] for k in keys]),
            _mean([P[k]["ce_plambda"] for k in keys]),
            _mean([P[k]["h_true"] for k in keys]),
        ])
    header = ["|D|", "n", "CE dpg/dis", "95% CI", "mtf dpg/dis", "CE dpg/r", "95% CI", "CE dpg/H", "mtf dpg/r",
              "CE dis/r", "mtf dis/r", "CE dpg", "CE dis", "CE r", "CE p_λ", "H"]
    return format_table(header, rows)


__all__ = ["plot_gam", "table1"]
