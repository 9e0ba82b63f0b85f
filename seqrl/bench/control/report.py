"""The control suite's tables and plots: results per task and row, the GDC/GDC++ batch-size sweep ([GDC++] Fig. 4),
metrics against samples (Fig. 3) and the variance diagnostics (Fig. 5)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..records import RunRecord
from ..stats import format_table


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.3g}"
    return f"{mean:.3g} ± {statistics.stdev(values):.2g}"


def results_table(records: list[RunRecord]) -> str:
    """Per task and row: E_π φ_i, KL(p‖π), KL(π‖a), Distinct-1, Self-BLEU-5, validation CE, mean ± std over seeds."""
    rows = []
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.params["task"], r.algorithm), []).append(r)
    for (task, label), rs in groups.items():
        phis = sorted(k for k in rs[0].metrics if k.startswith("phi_"))
        phi = ", ".join(f"{k[4:]} {_mean_std([r.metrics[k] for r in rs])}" for k in phis)
        rows.append([task, label, len(rs), phi,
                     *(_mean_std([r.metrics.get(k, math.nan) for r in rs])
                       for k in ("kl_p_pi", "kl_pi_a", "distinct_1", "self_bleu_5", "valid_ce", "var_a"))])
    header = ["task", "row", "seeds", "E_π φ", "KL(p‖π)", "KL(π‖a)", "Distinct-1", "Self-BLEU-5", "CE(grammar)",
              "Var(A)"]
    return format_table(header, rows)


def sweep_table(records: list[RunRecord]) -> str:
    groups: dict[tuple[str, int], dict[str, list[float]]] = {}
    for r in records:
        groups.setdefault((r.params["task"], r.params["batch_size"]), {}).setdefault(r.algorithm, []).append(
            r.metrics.get("kl_p_pi", math.nan))
    rows = []
    for (task, b), by in sorted(groups.items()):
        rows.append([task, b, _mean_std(by.get("dpg_off", [])), _mean_std(by.get("gdcpp", []))])
    return format_table(["task", "batch", "GDC KL(p‖π)", "GDC++ KL(p‖π)"], rows)


def _band(curves: list[dict[str, Any]], key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """x, mean, min and max over seeds of ``key`` at each sample count the curves share."""
    by_x: dict[float, list[float]] = {}
    for c in curves:
        for p in c["points"]:
            if key in p and p[key] is not None and math.isfinite(p[key]):
                by_x.setdefault(p["samples"], []).append(p[key])
    xs = sorted(by_x)
    return xs, [statistics.fmean(by_x[x]) for x in xs], [min(by_x[x]) for x in xs], [max(by_x[x]) for x in xs]


PANELS = (("kl_p_pi", "KL(p‖π), nats (↓)"), ("moment_gap", "max_i |E_π φ_i − μ̄_i| (↓)"),
          ("kl_pi_a", "KL(π‖a), nats (↓)"), ("self_bleu_5", "Self-BLEU-5, 0–100 (↓)"),
          ("distinct_1", "Distinct-1 (↑)"))


def plot_curves(curves: list[dict[str, Any]], out: Path) -> list[Path]:
    """[GDC++] Fig. 3-style panels per task (metrics vs samples, mean with a min–max band over seeds), the
    batch-size sweep (Fig. 4) and the variance diagnostics of GDC vs GDC++ (Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [c for c in curves if c["experiment"] == "main"]
    paths = [_plot_task(plt, [c for c in main if c["task"] == task], task, out)
             for task in dict.fromkeys(c["task"] for c in main)]
    sweep = [c for c in curves if c["experiment"] == "sweep"]
    if sweep:
        paths.append(_plot_sweep(plt, sweep, out))
    variance = [c for c in main if c["label"] in ("dpg_off", "gdcpp")]
    if variance:
        paths.append(_plot_variance(plt, variance, out))
    return paths


def _plot_task(plt: Any, cs: list[dict[str, Any]], task: str, out: Path) -> Path:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
    for label in dict.fromkeys(c["label"] for c in cs):
        mine = [c for c in cs if c["label"] == label]
        for ax, (key, _title) in zip(axes, PANELS):
            xs, mean, lo, hi = _band(mine, key)
            if xs:
                line, = ax.plot(xs, mean, label=label)
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
    for ax, (_, title) in zip(axes, PANELS):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("samples")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"control task {task} ({cs[0]['kind']}): metrics vs samples, mean and min–max over seeds")
    return _save(plt, fig, out / f"control_curves_{task}.png")


def _plot_sweep(plt: Any, sweep: list[dict[str, Any]], out: Path) -> Path:
    tasks = list(dict.fromkeys(c["task"] for c in sweep))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes[0], tasks):
        sizes = sorted({c["batch_size"] for c in sweep if c["task"] == task})
        for i, b in enumerate(sizes):
            for label, style in (("dpg_off", "--"), ("gdcpp", "-")):
                mine = [c for c in sweep if c["task"] == task and c["batch_size"] == b and c["label"] == label]
                xs, mean, lo, hi = _band(mine, "kl_p_pi")
                if xs:
                    ax.plot(xs, mean, style, color=colors[i % len(colors)],
                            label=f"{'GDC' if label == 'dpg_off' else 'GDC++'} batch {b}")
                    ax.fill_between(xs, lo, hi, color=colors[i % len(colors)], alpha=0.12)
        ax.set_xlabel("samples")
        ax.set_ylabel("KL(p‖π), nats")
        ax.set_title(f"{task}: GDC (dashed) vs GDC++ (solid) by batch size")
        ax.legend(fontsize=7)
    return _save(plt, fig, out / "control_batch_sweep.png")


def _plot_variance(plt: Any, var: list[dict[str, Any]], out: Path) -> Path:
    tasks = list(dict.fromkeys(c["task"] for c in var))
    keys = (("var_g", "Var(G)"), ("var_a", "Var(A)"), ("mean_abs_a", "E|A|"))
    fig, axes = plt.subplots(len(tasks), len(keys), figsize=(12, 3 * len(tasks)), squeeze=False)
    for row_axes, task in zip(axes, tasks):
        for ax, (key, title) in zip(row_axes, keys):
            for label in ("dpg_off", "gdcpp"):
                xs, mean, lo, hi = _band([c for c in var if c["task"] == task and c["label"] == label], key)
                if xs:
                    line, = ax.plot(xs, mean, label="GDC" if label == "dpg_off" else "GDC++")
                    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
            ax.set_yscale("log")
            ax.set_title(f"{task}: {title}", fontsize=9)
            ax.set_xlabel("samples")
            ax.legend(fontsize=7)
    fig.suptitle("Variance diagnostics ([GDC++] Fig. 5), A = P/(Zq) − [GDC++]·π/q")
    return _save(plt, fig, out / "control_variance.png")


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["PANELS", "plot_curves", "results_table", "sweep_table"]
