"""The control suite: reward maximization vs distribution matching under constraints ([GDC++] Sec. 4).

A small LSTM language model a(x), trained by seqrl on a generated grammar corpus
(:mod:`seqrl.bench.pretrained`, :mod:`seqrl.envs.grammar`), is fine-tuned so that its samples satisfy
constraints while staying close to a ([GDC++] Sec. 4.2): two pointwise tasks (a word; a word list),
one distributional (a female mention in 50% of samples), one set of four topic moments at 25% each,
and one hybrid (a pointwise topic and a distributional gender constraint). The target of every
distribution-matching row is the GDC EBM P(x) = a(x)·exp(Σ λ_i φ_i(x))·Π 1[φ_j(x) = 1] ([GDC++] Eq. 16),
λ fitted by SNIS; REINFORCE and KL-control maximize r(x) = Π_j 1[φ_j(x) = 1] and run on the pointwise
tasks only, as in the paper.

Rows: ``reinforce`` ([GDC++] Eq. 1), ``kl_control`` (Ziegler, Eq. 2), ``dpg_off`` (GDC: KL-adaptive DPG,
no baseline), ``gdcpp`` (GDC++, Alg. 1) and ``fdpg[<divergence>]`` (f-DPG, Go et al. 2023), each given the
same number of samples. Metrics at every validation step ([GDC++] Sec. 4.2, App. D, Sec. 4.5):
E_π φ_i, KL(p‖π) and TVD by importance sampling from a, KL(π‖a), Distinct-n, Self-BLEU-n, and for the DPG
rows Var(A), Var(G) and E|A| (Eq. 17–21). A batch-size sweep compares GDC and GDC++ at equal samples
([GDC++] Fig. 4).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...algorithms import ALGORITHMS, Offer, config_fields, resolve_algorithm
from ...config import check_ranges
from ...envs.grammar import Grammar
from ...metrics import sequence_log_probs
from ...policies.base import AutoregressivePolicy
from ...training import Callback, FitConfig
from ..pretrained import LMConfig, load_or_train_lm
from ..rows import Row, run_row, suite_defaults
from ..stats import paired_table
from ..suite import BenchOptions, RunRecord, Suite, override_settings, register_suite
from .estimates import ControlTarget, control_metrics, prepare_target, variance_diagnostics
from .report import plot_curves, results_table, sweep_table
from .tasks import TASK_NAMES, ControlTask, PointwiseReward, control_tasks


@dataclass(frozen=True)
class ControlRow:
    """A row of the table: ``label`` runs ``algorithm`` with config ``overrides``."""

    label: str
    algorithm: str
    overrides: tuple[tuple[str, Any], ...] = ()
    pointwise_only: bool = False
    """Reward maximization: r(x) = 1[pointwise constraints met] has no distributional form ([GDC++] Sec. 4.2)."""
    full_support_only: bool = False
    """The divergence is infinite where π > 0 = P (reverse KL, χ²): not run where a pointwise constraint filters."""

    def runs_on(self, task: ControlTask) -> bool:
        if self.pointwise_only and task.kind != "pointwise":
            return False
        return not (self.full_support_only and task.kind != "distributional")


DIVERGENCES = ("kl", "rkl", "js", "tv", "chi2")


def control_rows(divergences: Sequence[str] = DIVERGENCES) -> list[ControlRow]:
    """The suite's rows. ``dpg_off`` is GDC as [GDC++] runs it (KL-DPG of Khalifa et al. 2021: q ← π when the
    estimated KL(p‖π) < KL(p‖q)), so that it differs from ``gdcpp`` by the baseline alone; REINFORCE uses the
    leave-one-out mean baseline (its self-critical default decodes one greedy string for the whole batch)."""
    rows = [ControlRow("reinforce", "reinforce", (("baseline", "mean"),), pointwise_only=True),
            ControlRow("kl_control", "kl_control", (), pointwise_only=True),
            ControlRow("dpg_off", "dpg_off", (("proposal_update", "kl"),)),
            ControlRow("gdcpp", "gdcpp", ())]
    rows += [ControlRow(f"fdpg[{d}]", "fdpg", (("divergence", d),), full_support_only=d in ("rkl", "chi2"))
             for d in divergences]
    return rows


@dataclass(frozen=True, kw_only=True)
class ControlSettings:
    """The full run (a GPU run: ``--device cuda``). a(x) is shared by both forms and cached."""

    grammar_seed: int = 0
    corpus_size: int = 12_000
    lm_hidden_size: int = 128
    lm_embedding_dim: int = 64
    lm_epochs: int = 6
    tasks: tuple[str, ...] = TASK_NAMES
    divergences: tuple[str, ...] = DIVERGENCES
    """The f-DPG rows (``fdpg[<divergence>]``)."""
    steps: int = 500
    """Optimizer steps per row; every row sees ``steps × samples_per_step`` samples."""
    samples_per_step: int = 256
    lr: float = 1e-3
    """Adam lr of π, the same for every row (not tuned per algorithm)."""
    clip_grad_norm: float | None = 1.0
    """Unless the algorithm declares otherwise (``gdcpp`` trains unclipped; ``--set gdcpp.clip_grad_norm=1``)."""
    eval_every: int = 25
    eval_samples: int = 1024
    """Samples of π per evaluation (E_π φ, KL(π‖a), Distinct-n)."""
    self_bleu_samples: int = 200
    pool_size: int = 20_000
    """Samples of a for KL(p‖π) and TVD by importance sampling."""
    lambda_samples: int = 20_000
    """Samples of a for the SNIS fit of λ."""
    variance_samples: int = 32
    """Samples of q per evaluation for Var(A), Var(G), E|A| (per-sample gradients)."""
    target_seed: int = 0
    """Seed of λ's fit and of the pool: every row and seed measures the same p."""
    sweep: bool = True
    """Run the batch-size sweep ([GDC++] Fig. 4): GDC vs GDC++ at equal samples."""
    sweep_tasks: tuple[str, ...] = ("word_amazing", "topics_25")
    sweep_batch_sizes: tuple[int, ...] = (64, 128, 256, 512)
    sweep_samples: int = 128_000
    """Samples per sweep run (steps = sweep_samples / batch size)."""
    sweep_eval_every_samples: int = 6400

    def __post_init__(self) -> None:
        counts = ("corpus_size", "samples_per_step", "eval_samples", "self_bleu_samples", "pool_size", "lambda_samples",
                  "variance_samples", "sweep_samples")
        check_ranges(self, at_least_zero=("grammar_seed", "target_seed"),
                     limits={**dict.fromkeys(counts, 10_000_000), "lm_hidden_size": 65_536,
                             "lm_embedding_dim": 65_536})
        if self.self_bleu_samples < 2:
            raise ValueError(f"self_bleu_samples must be ≥ 2, got {self.self_bleu_samples}")
        unknown = sorted(set(self.tasks).union(self.sweep_tasks) - set(TASK_NAMES))
        if unknown:
            raise ValueError(f"unknown control task(s) {unknown}; known: {list(TASK_NAMES)}")
        bad = sorted(set(self.divergences) - set(DIVERGENCES))
        if bad:
            raise ValueError(f"unknown f-DPG divergence(s) {bad}; known: {list(DIVERGENCES)}")
        if any(b < 1 for b in self.sweep_batch_sizes):
            raise ValueError(f"sweep_batch_sizes must be ≥ 1, got {self.sweep_batch_sizes}")

    def lm_config(self) -> LMConfig:
        return LMConfig(grammar_seed=self.grammar_seed, corpus_size=self.corpus_size, hidden_size=self.lm_hidden_size,
                        embedding_dim=self.lm_embedding_dim, epochs=self.lm_epochs)


QUICK_SETTINGS = ControlSettings(steps=50, samples_per_step=128, eval_every=25, eval_samples=256,
                                 self_bleu_samples=60, pool_size=2000, lambda_samples=5000, variance_samples=16,
                                 divergences=("js",), sweep_batch_sizes=(64, 128, 256, 512),
                                 sweep_samples=5120, sweep_eval_every_samples=2560)
"""Minutes on a 2-core CPU: 6400 samples per row (one f-DPG divergence, JS), 5120 per sweep run, one seed by
default. ``seqrl bench control --quick``: 288 s wall on the 2-core CPU with OMP_NUM_THREADS=1, a(x)'s first
training (12k sentences, 6 epochs) included (2026-11-23, 35 runs)."""


class SampleCurve(Callback):
    """Records (samples seen, the evaluation's metrics) at every evaluation."""

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self.points: list[dict[str, float]] = []

    def on_evaluation(self, algorithm, state) -> None:
        self.points.append({"samples": float(state.step * self.samples_per_step),
                            **{k: float(v) for k, v in state.metrics.items() if k not in ("loss", "step")}})


@register_suite("control")
class ControlSuite(Suite):
    """Runs the rows of :func:`control_rows` (reward maximizers on pointwise tasks only) on every task and seed,
    then, with ``sweep``, GDC and GDC++ at four batch sizes; the paired comparison is against GDC."""

    name = "control"
    offers = frozenset({"reward", "potential", "validation"})
    settings_class = ControlSettings
    comparison = ("kl_p_pi", "min")
    reference = "dpg_off"

    def __init__(self) -> None:
        self.curves: list[dict[str, Any]] = []
        self._lm: dict[tuple[str, str], AutoregressivePolicy] = {}
        self._targets: dict[tuple[str, str], ControlTarget] = {}

    # --- which algorithms ---------------------------------------------------------------------
    def accepts(self, cls: Any) -> bool:
        return cls.name in {row.algorithm for row in control_rows()}

    def available_algos(self) -> list[str]:
        return [a for a in dict.fromkeys(r.algorithm for r in control_rows()) if a in ALGORITHMS.names()]

    def default_algos(self) -> list[str]:
        return self.available_algos()

    def settings_for(self, options: BenchOptions) -> ControlSettings:
        st = override_settings(QUICK_SETTINGS if options.quick else ControlSettings(), options.settings)
        self._settings = st
        return st

    def rows_for(self, task: ControlTask, options: BenchOptions, st: ControlSettings) -> list[ControlRow]:
        algos = set(options.algos or self.default_algos())
        return [r for r in control_rows(st.divergences) if r.algorithm in algos and r.algorithm in ALGORITHMS.names()
                and r.runs_on(task)]

    # --- jobs ------------------------------------------------------------------------------------
    def jobs(self, options: BenchOptions) -> list[dict[str, Any]]:
        st = self.settings_for(options)
        seeds = options.seeds or ((0,) if options.quick else (0, 1, 2))
        jobs: list[dict[str, Any]] = [{"experiment": "main", "task": t, "batch_size": st.samples_per_step, "seed": s}
                                      for t in st.tasks for s in seeds]
        algos = set(options.algos or self.default_algos())
        if st.sweep and algos & {"dpg_off", "gdcpp"}:
            jobs += [{"experiment": "sweep", "task": t, "batch_size": b, "seed": s}
                     for t in st.sweep_tasks for b in st.sweep_batch_sizes for s in seeds]
        return jobs

    def base_model(self, st: ControlSettings, options: BenchOptions) -> AutoregressivePolicy:
        """a(x), from the cache or trained once (kept in memory for the other jobs)."""
        key = (st.lm_config().key(), str(options.device))
        if key not in self._lm:
            self._lm[key] = load_or_train_lm(st.lm_config(), device=options.device, progress=options.bars,
                                             echo=print if options.progress else None)
        return self._lm[key]

    def target(self, task: ControlTask, base: AutoregressivePolicy, st: ControlSettings) -> ControlTarget:
        key = (task.name, json.dumps([st.lm_config().key(), st.lambda_samples, st.pool_size, st.target_seed,
                                      str(base.device)]))
        if key not in self._targets:
            self._targets[key] = prepare_target(task, base, lambda_samples=st.lambda_samples, pool_size=st.pool_size,
                                                seed=st.target_seed)
        return self._targets[key]

    def run_job(self, job: dict[str, Any], options: BenchOptions) -> list[RunRecord]:
        st = self.settings_for(options)
        base = self.base_model(st, options)
        vocab = base.vocab
        task = control_tasks(vocab)[job["task"]]
        target = self.target(task, base, st)
        seed, batch_size = job["seed"], job["batch_size"]
        sweep = job["experiment"] == "sweep"
        rows = self.rows_for(task, options, st)
        if sweep:
            rows = [r for r in rows if r.algorithm in ("dpg_off", "gdcpp")]
            steps = max(1, st.sweep_samples // batch_size)
            eval_every = max(1, st.sweep_eval_every_samples // batch_size)
        else:
            steps, eval_every = st.steps, st.eval_every
        grammar = Grammar()
        valid = grammar.batch(500, st.grammar_seed + 2)
        reward = PointwiseReward(vocab, task.constraints) if task.kind == "pointwise" else None
        params = {"experiment": job["experiment"], "task": task.name, "kind": task.kind, "batch_size": batch_size,
                  "steps": steps}
        fit_data = grammar.batch(batch_size, st.grammar_seed + 3)  # REINFORCE's "references": one sample each
        records = []
        for row in rows:
            records.append(self._run_row(row, task, target, base, reward, valid, fit_data, params, seed, steps,
                                         eval_every, batch_size, st, options))
        return records

    def _run_row(self, row: ControlRow, task: ControlTask, target: ControlTarget, base, reward, valid, fit_data,
                 params: dict[str, Any], seed: int, steps: int, eval_every: int, batch_size: int,
                 st: ControlSettings, options: BenchOptions) -> RunRecord:
        started = time.perf_counter()
        device = options.device
        cls = resolve_algorithm(row.algorithm)

        def start() -> AutoregressivePolicy:
            policy = copy.deepcopy(base)
            for p in policy.parameters():
                p.requires_grad_(True)
            return policy.train()

        offer = Offer(valid=valid, reward=reward if cls.requires.reward else None,
                      potential=target.potential if cls.requires.potential else None, proposal=base, steps=steps)
        settings = {"samples_per_step": batch_size, "batch_size": batch_size, "kl_samples": st.lambda_samples // 4,
                    "check_every": eval_every, **dict(row.overrides),
                    **suite_defaults(row.algorithm, lr=st.lr, clip_grad_norm=st.clip_grad_norm)}
        settings = {k: v for k, v in settings.items() if k in config_fields(cls)}
        generator = torch.Generator(device=device).manual_seed(seed + 7)

        def evaluate(alg) -> dict[str, float]:
            scores = control_metrics(alg.policy, base, target, base.vocab, num_samples=st.eval_samples,
                                     self_bleu_samples=st.self_bleu_samples, generator=generator)
            scores["valid_ce"] = float(-sequence_log_probs(alg.policy, valid).mean())
            scores.update(variance_diagnostics(alg, target, st.variance_samples))
            return scores

        curve = SampleCurve(batch_size)
        fit_config = FitConfig(max_steps=steps, eval_every=eval_every, keep="last", evaluate_at_start=True,
                               monitor="kl_p_pi", mode="min")
        _, algorithm, _ = run_row(Row(row.algorithm, start, offer, settings, fit_config,
                                      train=fit_data if cls.uses_data else None, evaluate=evaluate,
                                      callbacks=[curve]), options, seed)
        final = curve.points[-1]  # fit evaluates after the last step
        self.curves.append({"label": row.label, "seed": seed, **params, "points": curve.points})
        summary = {k: v for k, v in algorithm.summary().items() if isinstance(v, (int, float))}
        metrics = {**summary, **final, "log_z": target.log_z.log_z, "wall_s": time.perf_counter() - started}
        metrics.update({f"lambda_{n}": float(v) for n, v in zip(target.potential.names, target.potential.lam)})
        return RunRecord(row.label, seed, dict(params), metrics)

    # --- reporting -------------------------------------------------------------------------------
    def table(self, records: list[RunRecord]) -> str:
        main = [r for r in records if r.params.get("experiment") == "main"]
        sweep = [r for r in records if r.params.get("experiment") == "sweep"]
        out = []
        if main:
            out.append("Final metrics, mean ± std over seeds (KL in nats; Self-BLEU-5 0–100; E_π φ per constraint):")
            out.append(results_table(main))
        if sweep:
            out.append("\nBatch-size sweep at equal samples ([GDC++] Fig. 4): final KL(p‖π), mean ± std over seeds:")
            out.append(sweep_table(sweep))
        return "\n".join(out)

    def report(self, records: list[RunRecord]) -> str:
        text = self.table(records)
        main = [r for r in records if r.params.get("experiment") == "main"]
        paired = paired_table(main, "kl_p_pi", "min", self.reference)
        if paired:
            text += "\n\n" + paired
        return text

    def plot(self, records: list[RunRecord], out: Path) -> list[Path]:
        if not self.curves:
            return []
        path = out / "control_curves.json"
        path.write_text(json.dumps(self.curves, indent=1))
        paths = [path]
        paths += plot_curves(self.curves, out)
        return paths


__all__ = ["DIVERGENCES", "QUICK_SETTINGS", "ControlRow", "ControlSettings", "ControlSuite", "SampleCurve",
           "control_rows"]
