"""The GAM binary-motif suite ([DPG] Sec. 4, Table 1; the protocol is docs/benchmarks.md's).

For each motif, seed and |D|: train the autoregressive model r on D by MLE with early
stopping on V. For each feature mask: Training-1 fits λ by SNIS (proposal r); CE(T, p_λ) uses
log Z by importance sampling. Training-2 turns P_λ into a policy π by ``distill``
(rejection sampling + MLE), ``dpg_off`` ([DPG] Alg. 1), ``gdcpp`` ([GDC++] Alg. 1) and, on
request, on-policy ``dpg``. Metrics: CE(T, ·) in nats per sequence, H(p_true), motif
frequency of 2000 samples, estimated KL(p_λ‖π) and TVD, episodes, wall time.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from ..algorithms import Algorithm, Offer, config_fields, make_algorithm, resolve_algorithm
from ..config import check_ranges, check_size
from ..ebm import GAMPotential, MotifFeatures, Training1Config, fit_lambda
from ..ebm.sampling import LogZEstimate, ProposalDraw, base_log_ratio, draw, estimate_divergences, estimate_log_z
from ..ebm.training1 import Training1Result, lam_summary
from ..envs.motif import MotifTask
from ..envs.tasks import MAX_LENGTH, MAX_SPLIT_TOKENS
from ..metrics import cross_entropy, motif_frequency, sample_in_chunks, sequence_log_probs
from ..policies import MAX_LAYERS, MAX_WIDTH, AutoregressivePolicy, make_policy
from ..training import Callback, FitConfig, default_evaluate, fit
from ..utils import seed_everything
from .gam_report import plot_gam, table1
from .rows import Row, run_row, suite_defaults
from .stats import format_table
from .suite import BenchOptions, RunRecord, Suite, override_settings, register_suite

MAX_SAMPLES = 10_000_000
"""Most samples any one estimate or split of the suite draws (a batch of 10^7 sequences of 31 ids is 2.5 GiB)."""

MOTIFS = ("1000101000101", "1011100111001", "10001011111000")
FEATURES = ("1001111", "Mv1001111")
SEEDS = (1234, 4444)
DATASET_SIZES = (500, 1000, 5000, 10000, 20000)


@dataclass(frozen=True, kw_only=True)
class GamSettings:
    """The authors' settings ([DPG] Sec. 4 and their released code) unless noted."""

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
    snis_samples: int = 20_000
    """Proposal samples per SNIS moment estimate in Training-1."""
    snis_resample_every: int | None = 10
    """Fresh SNIS samples every this many λ steps (None: one pool for the whole fit)."""
    training1_steps: int = 100
    training1_solver: Literal["sgd", "newton"] = "sgd"
    """The authors' schedule λ += (10/(1+k))·(E_D φ − Ê φ), stopped after ``training1_steps`` or at a
    residual of ``training1_tolerance``. Newton (the library default) solves the dual exactly, and where a
    feature's data mean sits at its edge (every string of D holds the motif) it drives λ toward ±∞:
    on the quick grid λ_motif = 20.5 (log Z 14.6) against 10.7 (log Z 4.8) at |D| = 500, λ_alt_100 =
    −11.3 at 5000; the importance weights P/r then span e^20 and Training-2 within 200 steps suffers
    (dpg_off CE(T, π) 18.99 against 15.04 at 500; at 5000 nothing beat r) for a p_λ no closer to the
    truth (CE(T, p_λ) 14.87 against 14.88)."""
    training1_tolerance: float = 1e-3
    log_z_samples: int = 100_000
    """Samples of r for the importance-sampling estimate of log Z (CE(T, p_λ), KL, TVD)."""
    distill_samples: int = 20_000
    distill_budget: Literal["samples", "episodes"] = "samples"
    """What bounds ``distill``: ``samples``, ``distill_samples`` exact samples of p_λ however many draws of r their
    rejection takes (the paper's, [DPG] Sec. 3.2: a large sample; at |D| = 500 about 500 draws per accepted one);
    ``episodes``, exactly as many draws of r as Training-2's budget (``dpg_steps`` × ``episodes_per_step``), each
    accepted one trained on: distillation and DPG at the same number of samples of the proposal (issue #24)."""
    dpg_steps: int = 1000
    """Training-2 optimizer steps of ``episodes_per_step`` episodes each."""
    episodes_per_step: int | None = None
    """Sequences sampled per Training-2 step (None: ``batch_size``, the paper's 500)."""
    dpg_lr: float = 1e-2
    """Adam lr of π in dpg/dpg_off/gdcpp. With 1e-3 (the paper's r lr) dpg_off barely moved in
    150 steps at |D| = 500; 1e-2 brought CE(T, π) to CE(T, p_λ) in 300 steps (docs/benchmarks.md)."""
    dpg_clip_grad_norm: float | None = 0.25
    """Gradient-norm clipping of the sampling Training-2 algorithms (as for r), unless the algorithm
    declares otherwise (``gdcpp`` trains unclipped: see its docstring); ``--set gdcpp.clip_grad_norm=0.25``."""
    eval_every: int = 20
    """Steps between Training-2 evaluations (validation CE, KL estimate, proposal update)."""
    kl_samples: int = 2000
    table1_baseline: str = "distill"
    """The Training-2 row that [DPG] Table 1 divides by (its π_dis, distillation)."""

    def __post_init__(self) -> None:
        samples = ("test_size", "motif_samples", "snis_samples", "log_z_samples", "distill_samples", "kl_samples",
                   "episodes_per_step", "batch_size")
        check_ranges(self, fractions=("dropout",),
                     limits={**dict.fromkeys(samples, MAX_SAMPLES), "length": MAX_LENGTH, "hidden_size": MAX_WIDTH,
                             "num_layers": MAX_LAYERS})


QUICK_SETTINGS = GamSettings(hidden_size=64, max_epochs=60, snis_samples=20_000, snis_resample_every=None,
                             log_z_samples=50_000, distill_samples=2000, dpg_steps=200, eval_every=10,
                             kl_samples=5000)


def train_r(task: MotifTask, settings: GamSettings, seed: int, device: torch.device, progress: bool,
            policy: AutoregressivePolicy | None = None):
    """r: LSTM (or the ``policy`` given) trained by MLE on D with early stopping on V (CE), the best weights kept."""
    seed_everything(seed)
    policy = policy if policy is not None else new_policy(task, settings)
    mle = make_algorithm("mle", policy, batch_size=settings.batch_size, lr=settings.lr,
                         clip_grad_norm=settings.clip_grad_norm)
    config = FitConfig(max_epochs=settings.max_epochs, patience=settings.patience, keep="best", device=str(device),
                       seed=seed, progress=progress)
    return policy, fit(mle, task.split("train"), valid=task.split("valid"), config=config)


def new_policy(task: MotifTask, settings: GamSettings):
    return make_policy("lstm", task.vocab, task.max_len, hidden_size=settings.hidden_size,
                       num_layers=settings.num_layers, dropout=settings.dropout)


@dataclass
class FittedGAM:
    """A GAM P_λ = r·e^{λ·φ} after Training-1, with a pool of samples of r for importance sampling."""

    potential: GAMPotential
    training1: Training1Result
    pool: ProposalDraw
    """Samples of r with their log r and log P/r."""
    log_z: LogZEstimate
    """log Z = log E_r[e^{λ·φ}] estimated on the pool, with its standard error."""

    def divergences(self, policy, n: int | None = None) -> dict[str, float]:
        """KL(p_λ‖π) and TVD by importance sampling from r, which covers p_λ (p_λ/r = e^{λ·φ}/Z),
        on the first ``n`` samples of the pool (all by default)."""
        pool = self.pool
        idx = torch.arange(pool.batch.batch_size if n is None else min(n, pool.batch.batch_size))
        log_pi = sequence_log_probs(policy, pool.batch.index(idx))
        log_q, log_ratio = pool.log_q.cpu()[idx], pool.log_ratio.cpu()[idx]
        return estimate_divergences(log_q + log_ratio, log_pi, self.log_z.log_z, log_q)


def fit_gam(task: MotifTask, r, mask: str, settings: GamSettings, seed: int,
            generator: torch.Generator | None = None) -> FittedGAM:
    """Training-1 by SNIS ([DPG] Eq. 3, 7) on ``task``'s training set, then a pool of
    ``log_z_samples`` samples of r for log Z and the divergence estimates."""
    P = GAMPotential(r, MotifFeatures(task.vocab, task.motif, mask, task.length)).to(r.device)
    t1 = fit_lambda(P, task.split("train"), Training1Config(method="snis", num_samples=settings.snis_samples,
                                                            resample_every=settings.snis_resample_every,
                                                            max_steps=settings.training1_steps, seed=seed,
                                                            solver=settings.training1_solver,
                                                            tolerance=settings.training1_tolerance))
    pool = draw(r, settings.log_z_samples, base_log_ratio(P), generator)
    return FittedGAM(P, t1, pool, estimate_log_z(pool.log_ratio))


def motif_target(task: MotifTask, policy: AutoregressivePolicy, *, trained: bool, seed: int, device: torch.device,
                 progress: bool = False, mask: str = FEATURES[0],
                 echo: Callable[[str], None] = print) -> tuple[GAMPotential, AutoregressivePolicy]:
    """What ``seqrl train dpg --env seqrl/Motif-v0`` trains toward, as the suite does: r = ``policy`` trained by MLE
    on D first (unless ``trained``, e.g. from ``--init``), then λ by Training-1 for ``mask``; returns (P_λ over a
    frozen copy of r, that copy of r as the proposal). ``policy`` keeps r's weights: π starts at r."""
    settings = GamSettings()
    if not trained:
        echo(f"training r by MLE on the task's {task.sizes['train']} sequences first (early stopping on validation "
             "CE), as seqrl bench gam does")
        train_r(task, settings, seed, device, progress, policy=policy)
    r = copy.deepcopy(policy).eval()
    echo(f"fitting λ (Training-1, features {mask}) for P_λ = r·exp(λ·φ)")
    gam = fit_gam(task, r, mask, settings, seed, torch.Generator(device=r.device).manual_seed(seed + 1))
    return gam.potential, r


class KLCurve(Callback):
    """Records (episodes, estimated KL(p_λ‖π), validation CE) at every evaluation."""

    def __init__(self) -> None:
        self.points: list[dict[str, float]] = []

    def on_evaluation(self, algorithm, state) -> None:
        self.points.append({k: state.metrics[k] for k in ("step", "episodes", "kl_p_pi", "valid_ce")
                            if k in state.metrics})


def training2_row(algo: str, task: MotifTask, r: AutoregressivePolicy, gam: FittedGAM, settings: GamSettings, *,
                  evaluate: Callable[[Any], dict[str, float]] | None = None, callbacks: Sequence[Callback] = ()
                  ) -> Row:
    """Training-2 ([DPG] Sec. 3.2) of a copy of r toward P_λ by ``algo``, as the suite runs it: the paper's
    optimizer for distillation's MLE, ``dpg_lr`` and ``dpg_clip_grad_norm`` for the sampling algorithms (where the
    algorithm keeps the common defaults: GDC++ trains unclipped), ``episodes_per_step`` samples per step, the
    proposal checked at every evaluation, and r as a candidate of the early stopping (evaluated at the start), so
    π is never worse than r on validation CE."""
    cls = resolve_algorithm(algo)
    valid = task.split("valid")
    fit_config = FitConfig(patience=settings.patience, keep="best", evaluate_at_start=True)
    if cls.uses_data:  # MLE on samples it draws (distillation): epochs, as r was trained
        budget = settings.dpg_steps * (settings.episodes_per_step or settings.batch_size)
        algo_settings = {"batch_size": settings.batch_size, "num_samples": settings.distill_samples,
                         **({"proposal_budget": budget} if settings.distill_budget == "episodes" else {}),
                         **suite_defaults(algo, lr=settings.lr, clip_grad_norm=settings.clip_grad_norm)}
        fit_config = replace(fit_config, max_epochs=settings.max_epochs)
    else:
        algo_settings = {"samples_per_step": settings.episodes_per_step or settings.batch_size,
                         "kl_samples": settings.kl_samples, "check_every": settings.eval_every,
                         **suite_defaults(algo, lr=settings.dpg_lr, clip_grad_norm=settings.dpg_clip_grad_norm)}
        fit_config = replace(fit_config, max_steps=settings.dpg_steps, eval_every=settings.eval_every)
    known = config_fields(cls)
    algo_settings = {k: v for k, v in algo_settings.items() if k in known}

    def start() -> AutoregressivePolicy:
        policy = new_policy(task, settings).to(r.device)
        policy.load_state_dict(r.state_dict())
        return policy

    return Row(algo, start, Offer(valid=valid, potential=gam.potential, proposal=r), algo_settings, fit_config,
               evaluate=evaluate or default_evaluate(valid), callbacks=callbacks)


def training2(algo: str, task: MotifTask, r: AutoregressivePolicy, gam: FittedGAM, settings: GamSettings, *,
              device: torch.device, seed: int, evaluate: Callable[[Any], dict[str, float]] | None = None,
              callbacks: Sequence[Callback] = (), progress: bool = False,
              options: BenchOptions | None = None) -> tuple[AutoregressivePolicy, Algorithm]:
    """Training-2 of one algorithm (:func:`training2_row`) run by the suites' one row runner; returns (π, algorithm)."""
    options = options or BenchOptions(device=device, progress=progress)
    policy, algorithm, _ = run_row(training2_row(algo, task, r, gam, settings, evaluate=evaluate,
                                                 callbacks=callbacks), options, seed)
    return policy, algorithm


@register_suite("gam")
class GamSuite(Suite):
    """Row ``mle`` is r itself (trained for every job); Training-2 runs every registered algorithm that
    trains a policy toward a potential (``requires.potential``)."""

    name = "gam"
    offers = frozenset({"potential", "validation"})
    settings_class = GamSettings
    grid_options = ("sizes", "motifs", "masks")
    comparison = ("ce_test", "min")

    def __init__(self, settings: GamSettings | None = None) -> None:
        self.settings = settings
        self.curves: list[dict[str, Any]] = []

    def available_algos(self) -> list[str]:
        return [self.reference, *super().available_algos()]

    def default_algos(self) -> list[str]:
        return [self.reference, *super().default_algos()]

    def settings_for(self, options: BenchOptions) -> GamSettings:
        """The paper's settings; ``--quick`` uses a 64-unit LSTM and shorter runs so that the
        reduced grid runs in minutes on a 2-core CPU (0.1 s per step instead of 0.55 s)."""
        base = self.settings or (QUICK_SETTINGS if options.quick else GamSettings())
        self._settings = override_settings(base, options.settings)
        return self._settings

    def jobs(self, options: BenchOptions) -> list[dict[str, Any]]:
        self.settings_for(options)  # settings checked, and known to the report even when every job is read back
        grid = options.grid
        motifs: tuple[str, ...]
        masks: tuple[str, ...]
        sizes: tuple[int, ...]
        seeds: tuple[int, ...]
        if options.quick:
            motifs, masks, sizes, seeds = MOTIFS[:1], FEATURES[:1], (500, 5000), SEEDS[:1]
        else:
            motifs, masks, sizes, seeds = MOTIFS, FEATURES, DATASET_SIZES, SEEDS
        motifs = tuple(grid.get("motifs", motifs))
        masks = tuple(grid.get("masks", masks))
        sizes = tuple(int(s) for s in grid.get("sizes", sizes))
        for size in sizes:  # before anything is written: a size that cannot be drawn is a usage error
            if size < 1:
                raise ValueError(f"--sizes: |D| must be ≥ 1, got {size}")
            width = self._settings.length + 2
            check_size("--sizes: |D|", size, MAX_SPLIT_TOKENS // width, unit=" sequences", bytes_each=8 * width)
        seeds = options.seeds or seeds
        for motif in motifs:
            vocab = MotifTask(motif, train_size=1, test_size=1).vocab  # validates the motif
            for mask in masks:
                MotifFeatures(vocab, motif, mask)  # a bad mask fails before any training
        return [{"motif": m, "masks": masks, "dataset_size": d, "seed": s}
                for m in motifs for s in seeds for d in sizes]

    def run_job(self, job: dict[str, Any], options: BenchOptions) -> list[RunRecord]:
        st = self.settings_for(options)
        algos = options.algos or self.default_algos()
        device, seed = options.device, job["seed"]
        task = MotifTask(job["motif"], st.length, train_size=job["dataset_size"], test_size=st.test_size, seed=seed)
        test = task.split("test")
        started = time.perf_counter()
        r, r_fit = train_r(task, st, seed, device, options.bars)
        gen = torch.Generator(device=device).manual_seed(seed)
        base = {
            "ce_r": cross_entropy(r, test),
            "h_true": task.entropy(),
            "motif_freq_r": motif_frequency(sample_in_chunks(r, st.motif_samples, generator=gen), task.vocab,
                                            task.motif),
        }
        params = {"motif": job["motif"], "dataset_size": job["dataset_size"], "test_size": st.test_size}
        records = [RunRecord(self.reference, seed, {**params, "features": "-"},
                             {**base, "ce_test": base["ce_r"], "motif_freq": base["motif_freq_r"],
                              "epochs_r": r_fit.steps / max(1, -(-job["dataset_size"] // st.batch_size)),
                              "episodes": 0, "wall_s": time.perf_counter() - started})]
        wanted = [a for a in algos if a != self.reference]
        if not wanted:
            return records
        for mask in job["masks"]:
            records += self._training2(task, r, mask, wanted, st, base, params, seed, options)
        return records

    def _training2(self, task, r, mask, algos, st, base, params, seed, options) -> list[RunRecord]:
        device = options.device
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        started = time.perf_counter()
        gam = fit_gam(task, r, mask, st, seed, gen)
        P, t1, z, divergences = gam.potential, gam.training1, gam.log_z, gam.divergences
        test = task.split("test")
        log_p_test = sequence_log_probs(r, test) + P.log_ratio_to_base(test.to(device)).double().cpu()
        gam_metrics = {"ce_plambda": float(-(log_p_test.mean()) + z.log_z), "ce_plambda_se": z.stderr,
                       "log_z": z.log_z, "training1_steps": t1.steps,
                       "wall_s_training1": time.perf_counter() - started,
                       **lam_summary(t1, P.features.names)}

        valid = task.split("valid")

        def evaluate(alg) -> dict[str, float]:
            return {"valid_ce": cross_entropy(alg.policy, valid), "episodes": float(alg.summary().get("episodes", 0)),
                    **divergences(alg.policy, st.kl_samples)}

        records = []
        for algo in algos:
            t0 = time.perf_counter()
            curve = KLCurve()
            policy, algorithm = training2(algo, task, r, gam, st, device=device, seed=seed, evaluate=evaluate,
                                          callbacks=[curve], options=options)
            summary = algorithm.summary()
            self.curves.append({"algorithm": algo, "seed": seed, **params, "features": mask, "points": curve.points})
            samples = sample_in_chunks(policy, st.motif_samples, generator=gen)
            metrics = {**base, **gam_metrics, **divergences(policy), **summary,
                       "ce_test": cross_entropy(policy, test),
                       "motif_freq": motif_frequency(samples, task.vocab, task.motif),
                       "episodes": float(summary.get("episodes", 0)), "wall_s": time.perf_counter() - t0}
            records.append(RunRecord(algo, seed, {**params, "features": mask}, metrics))
        return records

    # --- reporting -------------------------------------------------------------------
    def table(self, records: list[RunRecord]) -> str:
        rows = [[r.algorithm, r.params["motif"], r.params["features"], r.seed, r.params["dataset_size"],
                 r.metrics["ce_test"], r.metrics["ce_r"], r.metrics.get("ce_plambda", math.nan), r.metrics["h_true"],
                 r.metrics["motif_freq"], r.metrics.get("kl_p_pi", math.nan), r.metrics["episodes"],
                 r.metrics["wall_s"]] for r in records]
        header = ["algorithm", "motif", "ft", "seed", "|D|", "CE(T,π)", "CE(T,r)", "CE(T,p_λ)", "H(p_true)",
                  "motif_freq", "KL(p_λ‖π)", "episodes", "wall_s"]
        out = [format_table(header, rows)]
        dis = getattr(self, "_settings", self.settings or GamSettings()).table1_baseline
        if any(r.algorithm == dis for r in records):
            for algo in dict.fromkeys(r.algorithm for r in records):
                if algo not in (dis, self.reference):
                    out.append(f"\nTable 1 of [DPG] with dpg = {algo}, dis = {dis} (means over motifs, features, "
                               f"seeds):\n" + table1(records, algo, dis))
        return "\n".join(out)

    def plot(self, records: list[RunRecord], out: Path) -> list[Path]:
        """``gam_ce_vs_D.png`` and ``gam_kl_curves.png`` (:mod:`seqrl.bench.gam_report`)."""
        return plot_gam(records, self.curves, out, self.reference)


__all__ = ["FittedGAM", "GamSettings", "GamSuite", "fit_gam", "QUICK_SETTINGS", "table1", "asdict"]
