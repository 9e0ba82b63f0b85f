"""The GAM binary-motif suite ([DPG] Sec. 4, Table 1; protocol in DESIGN.md).

For each motif, seed and |D|: train the autoregressive model r on D by MLE with early
stopping on V, then report CE(T, r), H(p_true) and r's motif frequency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..algorithms import make_algorithm
from ..envs.motif import MotifTask
from ..metrics import cross_entropy, motif_frequency, sample_in_chunks
from ..policies import make_policy
from ..training import FitConfig, fit
from .runner import BenchOptions, RunRecord, Suite, format_table, register_suite

MOTIFS = ("1000101000101", "1011100111001", "10001011111000")
FEATURES = ("1001111", "Mv1001111")
SEEDS = (1234, 4444)
DATASET_SIZES = (500, 1000, 5000, 10000, 20000)


@dataclass(frozen=True, kw_only=True)
class GamSettings:
    """The authors' settings ([DPG] Sec. 4 and their released code)."""

    length: int = 30
    test_size: int = 5000
    hidden_size: int = 200
    num_layers: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 500
    clip_grad_norm: float = 0.25
    patience: int = 8
    max_epochs: int = 200
    motif_samples: int = 2000


QUICK_SETTINGS = GamSettings(hidden_size=64, max_epochs=100)


def train_r(task: MotifTask, settings: GamSettings, seed: int, device: torch.device, progress: bool):
    """r: LSTM trained by MLE on D with early stopping on V (CE), best weights kept."""
    torch.manual_seed(seed)
    policy = make_policy("lstm", task.vocab, task.max_len, hidden_size=settings.hidden_size,
                         num_layers=settings.num_layers, dropout=settings.dropout)
    config = FitConfig(max_epochs=settings.max_epochs, batch_size=settings.batch_size, lr=settings.lr,
                       clip_grad_norm=settings.clip_grad_norm, patience=settings.patience,
                       device=str(device), seed=seed, progress=progress)
    result = fit(make_algorithm("mle", policy), task.split("train"), valid=task.split("valid"), config=config)
    return policy, result


@register_suite("gam")
class GamSuite(Suite):
    name = "gam"
    default_algos = ("mle",)
    available_algos = ("mle",)

    def __init__(self, settings: GamSettings | None = None) -> None:
        self.settings = settings

    def settings_for(self, options: BenchOptions) -> GamSettings:
        """The paper's settings; ``--quick`` uses a 64-unit LSTM and fewer epochs so that the
        reduced grid runs in minutes on a 2-core CPU (0.1 s per step instead of 0.55 s)."""
        if self.settings is not None:
            return self.settings
        return QUICK_SETTINGS if options.quick else GamSettings()

    def jobs(self, options: BenchOptions) -> list[dict[str, Any]]:
        if options.quick:
            motifs, sizes, seeds = MOTIFS[:1], (500, 5000), options.seeds or SEEDS[:1]
        else:
            motifs, sizes, seeds = MOTIFS, DATASET_SIZES, options.seeds or SEEDS
        return [{"motif": m, "dataset_size": d, "seed": s} for m in motifs for s in seeds for d in sizes]

    def run_job(self, job: dict[str, Any], options: BenchOptions) -> list[RunRecord]:
        st = self.settings_for(options)
        task = MotifTask(job["motif"], st.length, train_size=job["dataset_size"], test_size=st.test_size,
                         seed=job["seed"])
        started = time.perf_counter()
        r, result = train_r(task, st, job["seed"], options.device, options.progress)
        samples = sample_in_chunks(r, st.motif_samples, generator=None)
        metrics = {
            "ce_r": cross_entropy(r, task.split("test")),
            "h_true": task.entropy(),
            "motif_freq_r": motif_frequency(samples, task.vocab, task.motif),
            "epochs_r": result.steps / max(1, -(-job["dataset_size"] // st.batch_size)),
            "wall_s": time.perf_counter() - started,
        }
        params = {"motif": job["motif"], "dataset_size": job["dataset_size"], "test_size": st.test_size}
        return [RunRecord("mle", job["seed"], params, metrics)]

    def table(self, records: list[RunRecord]) -> str:
        rows = [[r.algorithm, r.params["motif"], r.seed, r.params["dataset_size"], r.metrics["ce_r"],
                 r.metrics["h_true"], r.metrics["ce_r"] / r.metrics["h_true"], r.metrics["motif_freq_r"],
                 r.metrics["wall_s"]] for r in records]
        header = ["algorithm", "motif", "seed", "|D|", "CE(T,r)", "H(p_true)", "CE/H", "motif_freq_r", "wall_s"]
        return format_table(header, rows)

    def plot(self, records: list[RunRecord], out: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax2 = ax.twinx()
        for motif in sorted({r.params["motif"] for r in records}):
            rs = sorted((r for r in records if r.params["motif"] == motif), key=lambda r: r.params["dataset_size"])
            xs = [r.params["dataset_size"] for r in rs]
            ax.plot(xs, [r.metrics["ce_r"] for r in rs], "o-", label=f"CE(T, r) {motif}")
            ax.plot(xs, [r.metrics["h_true"] for r in rs], "k:", label="H(p_true)")
            ax2.plot(xs, [r.metrics["motif_freq_r"] for r in rs], "s--", alpha=0.6, label=f"motif freq r {motif}")
        ax.set_xscale("log")
        ax.set_xlabel("|D|")
        ax.set_ylabel("nats per sequence")
        ax2.set_ylabel("motif frequency")
        ax.legend(loc="upper right", fontsize=7)
        fig.tight_layout()
        path = out / "gam_ce_vs_D.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return [path]
