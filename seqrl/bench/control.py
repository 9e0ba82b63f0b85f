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
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..algorithms import ALGORITHMS, make_algorithm
from ..algorithms.base import RunContext
from ..algorithms.dpg import DPGBase
from ..config import check_ranges
from ..ebm.constraints import Constraint, ConstraintPotential
from ..ebm.sampling import LogZEstimate, ProposalDraw, base_log_ratio, draw, estimate_divergences, estimate_log_z
from ..ebm.training1 import Training1Config, Training1Result
from ..envs.grammar import FEMALE_WORDS, MALE_WORDS, Grammar, contains_any, count_of, topic_words
from ..exact import eval_mode
from ..metrics import distinct_n, self_bleu, sequence_log_probs
from ..policies.base import AutoregressivePolicy
from ..rewards.base import BaseReward
from ..training import Callback, FitConfig, fit
from ..types import SequenceBatch, Vocab
from ..utils import seed_everything
from .pretrained import LMConfig, load_or_train_lm
from .stats import format_table, paired_table
from .suite import BenchOptions, RunRecord, Suite, override_settings, register_suite

TaskKind = Literal["pointwise", "distributional", "hybrid"]


# --- tasks -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ControlTask:
    """A named set of constraints on a(x) ([GDC++] Sec. 4.2); ``kind`` is pointwise when every μ̄ is 1."""

    name: str
    description: str
    constraints: tuple[Constraint, ...]

    @property
    def kind(self) -> TaskKind:
        pointwise = [c.pointwise for c in self.constraints]
        return "pointwise" if all(pointwise) else "distributional" if not any(pointwise) else "hybrid"


def word_feature(vocab: Vocab, words: Sequence[str]) -> Callable[[SequenceBatch], Tensor]:
    """φ(x) = 1 iff x holds at least one of ``words`` ([GDC++] Sec. 4.2 (a), (b))."""
    ids = torch.tensor(vocab.encode(list(words), add_eos=False))

    def feature(batch: SequenceBatch) -> Tensor:
        return contains_any(batch, ids).double()

    return feature


def more_female_than_male(vocab: Vocab) -> Callable[[SequenceBatch], Tensor]:
    """φ(x) = 1 iff x holds more female than male mentions ([GDC++] Sec. 4.2 (f))."""
    female = torch.tensor(vocab.encode(list(FEMALE_WORDS), add_eos=False))
    male = torch.tensor(vocab.encode(list(MALE_WORDS), add_eos=False))

    def feature(batch: SequenceBatch) -> Tensor:
        return (count_of(batch, female) > count_of(batch, male)).double()

    return feature


TASK_NAMES = ("word_amazing", "wordlist_politics", "female_50", "topics_25", "hybrid_sports_female")


def control_tasks(vocab: Vocab) -> dict[str, ControlTask]:
    """The suite's tasks over the grammar's vocabulary, by name (:data:`TASK_NAMES`)."""
    word = lambda *w: word_feature(vocab, w)  # noqa: E731
    topics = ("science", "art", "sports", "business")
    return {
        "word_amazing": ControlTask("word_amazing", "pointwise: contains 'amazing' (≈12% of a)",
                                   (Constraint("amazing", word("amazing"), 1.0),)),
        "wordlist_politics": ControlTask("wordlist_politics", "pointwise: contains a politics word (≈20% of a)",
                                         (Constraint("politics", word(*topic_words("politics")), 1.0),)),
        "female_50": ControlTask("female_50", "distributional: a female mention in 50% (≈20% of a)",
                                 (Constraint("female", word(*FEMALE_WORDS), 0.5),)),
        "topics_25": ControlTask("topics_25", "distributional: science, art, sports, business at 25% each",
                                 tuple(Constraint(t, word(*topic_words(t)), 0.25) for t in topics)),
        "hybrid_sports_female": ControlTask(
            "hybrid_sports_female", "hybrid: a sports word (μ̄ = 1), more female than male mentions (μ̄ = 0.5)",
            (Constraint("sports", word(*topic_words("sports")), 1.0),
             Constraint("female_gt_male", more_female_than_male(vocab), 0.5))),
    }


class PointwiseReward(BaseReward):
    """r(x) = Π_j 1[φ_j(x) = μ̄_j] over a task's pointwise constraints: what REINFORCE and KL-control maximize
    ([GDC++] Sec. 4.2, "R(x) = 1 if and only if the pointwise constraints are met")."""

    name = "pointwise_constraints"
    needs_reference = False
    terminal_only = True

    def __init__(self, vocab: Vocab, constraints: Sequence[Constraint]) -> None:
        super().__init__(vocab)
        self.constraints = tuple(c for c in constraints if c.pointwise)
        if not self.constraints:
            raise ValueError("PointwiseReward needs at least one pointwise constraint (μ̄ ∈ {0, 1})")

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        met = torch.ones(hyps.batch_size, dtype=torch.bool, device=hyps.device)
        for c in self.constraints:
            met = met & (c.values(hyps).to(hyps.device) == c.moment)
        return met.float()


# --- the target p and the metrics ---------------------------------------------------------------------
@dataclass
class ControlTarget:
    """A task's EBM P = a·e^{λ·φ}·1[pointwise] with λ fitted, and a pool of samples of a for importance sampling."""

    task: ControlTask
    potential: ConstraintPotential
    training1: Training1Result
    pool: ProposalDraw
    """Samples of a with log a(x) and log P(x)/a(x)."""
    log_z: LogZEstimate
    """log Z = log E_a[P/a] on the pool."""


def prepare_target(task: ControlTask, base: AutoregressivePolicy, *, lambda_samples: int, pool_size: int,
                   seed: int) -> ControlTarget:
    """Fit λ by SNIS on ``lambda_samples`` samples of a ([GDC++] Sec. 4.1) and draw the importance-sampling pool."""
    potential = ConstraintPotential(base, task.constraints).to(base.device)
    fitted = potential.fit(Training1Config(num_samples=lambda_samples, resample_every=None, seed=seed))
    generator = torch.Generator(device=base.device).manual_seed(seed + 1)
    pool = draw(base, pool_size, base_log_ratio(potential), generator)
    return ControlTarget(task, potential, fitted, pool, estimate_log_z(pool.log_ratio))


def divergences_from_pool(policy, target: ControlTarget, mass_outside: float | None = None) -> dict[str, float]:
    """KL(p‖π) and TVD(p, π) by importance sampling from a ([GDC++] App. D): a covers p (p/a = e^{λ·φ}/Z), so
    KL ≈ mean_a (p/a)·log(p/π), and only the pool's rows inside p's support need log π.

    TVD = ½ Σ_{x∈S} |p − π| + ½ π(X∖S), S the support of the pointwise constraints: the first sum by importance
    sampling on the pool's rows in S, π(X∖S) = ``mass_outside`` (estimated from samples of π by the caller);
    None scores the pool's rows outside S as well (importance sampling from a for both parts)."""
    pool = target.pool
    log_q, log_ratio = pool.log_q.double().cpu(), pool.log_ratio.double().cpu()
    n = log_q.numel()
    inside = torch.isfinite(log_ratio)
    rows = inside.nonzero().flatten()
    if rows.numel() == 0:
        raise ValueError("the pool holds no sample of p's support: draw a larger pool")
    log_pi = sequence_log_probs(policy, pool.batch.index(rows.to(pool.batch.device)))
    inner = estimate_divergences(log_ratio[rows] + log_q[rows], log_pi, target.log_z.log_z, log_q[rows])
    share = rows.numel() / n  # the estimates above average over the support's rows; the rest add 0 (KL)
    kl, tvd_inside = inner["kl_p_pi"] * share, inner["tvd"] * share
    if mass_outside is None:
        outside = (~inside).nonzero().flatten()
        if outside.numel():
            log_pi_out = sequence_log_probs(policy, pool.batch.index(outside.to(pool.batch.device)))
            mass_outside = float((log_pi_out - log_q[outside]).exp().sum() / n)
        else:
            mass_outside = 0.0
    return {"kl_p_pi": kl, "tvd": tvd_inside + 0.5 * mass_outside}


@torch.no_grad()
def control_metrics(policy, base, target: ControlTarget, vocab: Vocab, *, num_samples: int = 512,
                    self_bleu_samples: int = 100, generator: torch.Generator | None = None) -> dict[str, float]:
    """The metrics of [GDC++] Sec. 4.2 on ``num_samples`` samples of π: ``phi_<name>`` = E_π φ_i, ``moment_gap`` =
    max_i |E_π φ_i − μ̄_i|, ``kl_p_pi`` and ``tvd`` (IS from a, App. D), ``kl_pi_a`` = mean log π/a on samples of π
    (nats), ``distinct_1..3`` (within a sample) and ``self_bleu_5`` (across the first ``self_bleu_samples``)."""
    with eval_mode(policy):
        samples = policy.sample(num_samples, generator=generator)
    batch = samples.batch
    out: dict[str, float] = {}
    gaps = []
    for c in target.task.constraints:
        mean = float(c.values(batch).mean())
        out[f"phi_{c.name}"] = mean
        gaps.append(abs(mean - c.moment))
    out["moment_gap"] = max(gaps)
    log_pi = samples.logp.double().cpu()
    log_a = sequence_log_probs(base, batch)
    out["kl_pi_a"] = float((log_pi - log_a).mean())
    support = target.potential.log_support(batch)
    out.update(divergences_from_pool(policy, target, mass_outside=float((support == -math.inf).double().mean())))
    texts = batch.to("cpu").to_strings(vocab)
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(texts, n)
    out["self_bleu_5"] = self_bleu(texts[:self_bleu_samples], 5)
    return out


# --- variance diagnostics ([GDC++] Sec. 4.5) ----------------------------------------------------------------
def dpg_advantage(log_p_unnorm: Tensor, log_z: float, log_q: Tensor, log_pi: Tensor, baseline: bool) -> Tensor:
    """[B] A(x) = P(x)/(Z q(x)) − [baseline]·π(x)/q(x) ([GDC++] Sec. 4, A ≐ P/q − Z·π/q, here divided by Z so that
    E_q|A| = 2·TVD(p, π) (Eq. 21) with the baseline; without it A = p/q, GDC's weight), float64."""
    if log_p_unnorm.dim() != 1 or not (log_p_unnorm.shape == log_q.shape == log_pi.shape):
        raise ValueError(f"log P, log q and log π must all be [B], got {tuple(log_p_unnorm.shape)}, "
                         f"{tuple(log_q.shape)}, {tuple(log_pi.shape)}")
    advantage = (log_p_unnorm.double() - log_z - log_q.double()).exp()
    if baseline:
        advantage = advantage - (log_pi.double() - log_q.double()).exp()
    return advantage


def _weights(n: int, weights: Tensor | None, device=None) -> Tensor:
    """[B] expectation weights: 1/B (a sample mean) or the given ones (q(x) on an enumerated space)."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
    if weights.shape != (n,):
        raise ValueError(f"weights must be [{n}], got {tuple(weights.shape)}")
    return weights.double().to(device)


def advantage_stats(advantage: Tensor, weights: Tensor | None = None) -> dict[str, float]:
    """Var(A) = E_q (A − E_q A)² (Eq. 19) and E_q|A| (Eq. 20) as sample means, or as exact expectations
    with ``weights`` = q(x) over an enumerated space."""
    if advantage.dim() != 1 or advantage.numel() == 0:
        raise ValueError(f"advantage must be a non-empty [B] tensor, got shape {tuple(advantage.shape)}")
    w = _weights(advantage.numel(), weights, advantage.device)
    a = advantage.double()
    mean = (w * a).sum()
    return {"var_a": float((w * (a - mean) ** 2).sum()), "mean_abs_a": float((w * a.abs()).sum())}


def gradient_variance(policy, batch: SequenceBatch, advantage: Tensor, weights: Tensor | None = None) -> float:
    """Var(G) = E_q‖G(x)‖² − ‖E_q G(x)‖², G(x) = A(x)∇_θ log π_θ(x) ([GDC++] Eq. 17–18), from per-sample
    gradients (one backward pass per row; keep the batch small)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("gradient_variance: the policy has no trainable parameters")
    w = _weights(batch.batch_size, weights)
    logp = policy.sequence_log_prob(batch.to(policy.device))
    mean = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    second = 0.0
    for b in range(batch.batch_size):
        grads = torch.autograd.grad(logp[b], params, retain_graph=b + 1 < batch.batch_size, allow_unused=True)
        scale = float(advantage[b])
        sq = 0.0
        for m, g in zip(mean, grads):
            if g is None:
                continue
            gb = g.double() * scale
            m += float(w[b]) * gb
            sq += float((gb * gb).sum())
        second += float(w[b]) * sq
    return second - float(sum((m * m).sum() for m in mean))


def variance_diagnostics(algorithm, target: ControlTarget, num_samples: int = 32) -> dict[str, float]:
    """Var(A), Var(G) and E|A| ([GDC++] Sec. 4.5) of an algorithm with DPG's loss (``dpg``, ``dpg_off``,
    ``gdcpp``) on ``num_samples`` fresh samples of its proposal q; {} for other algorithms."""
    if getattr(type(algorithm), "loss", None) is not DPGBase.loss:  # f-DPG weighs otherwise; PG rows have no q
        return {}
    sampler, baseline = algorithm.sampler, algorithm.config.baseline
    policy = algorithm.policy
    d = draw(sampler, num_samples, lambda b, lq: target.potential.log_potential(b).to(lq) - lq)
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            log_pi = policy.sequence_log_prob(d.batch)
        advantage = dpg_advantage(d.log_ratio + d.log_q, target.log_z.log_z, d.log_q, log_pi, bool(baseline))
        out = advantage_stats(advantage)
        out["var_g"] = gradient_variance(policy, d.batch, advantage)
    finally:
        policy.zero_grad(set_to_none=True)
        policy.train(was_training)
    return out


# --- the suite --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
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


def control_rows(divergences: Sequence[str] = DIVERGENCES) -> list[Row]:
    """The suite's rows. ``dpg_off`` is GDC as [GDC++] runs it (KL-DPG of Khalifa et al. 2021: q ← π when the
    estimated KL(p‖π) < KL(p‖q)), so that it differs from ``gdcpp`` by the baseline alone; REINFORCE uses the
    leave-one-out mean baseline (its self-critical default decodes one greedy string for the whole batch)."""
    rows = [Row("reinforce", "reinforce", (("baseline", "mean"),), pointwise_only=True),
            Row("kl_control", "kl_control", (), pointwise_only=True),
            Row("dpg_off", "dpg_off", (("proposal_update", "kl"),)),
            Row("gdcpp", "gdcpp", ())]
    rows += [Row(f"fdpg[{d}]", "fdpg", (("divergence", d),), full_support_only=d in ("rkl", "chi2"))
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
    offers = frozenset({"reward", "potential"})
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

    def rows_for(self, task: ControlTask, options: BenchOptions, st: ControlSettings) -> list[Row]:
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

    def _run_row(self, row: Row, task: ControlTask, target: ControlTarget, base, reward, valid, fit_data,
                 params: dict[str, Any], seed: int, steps: int, eval_every: int, batch_size: int,
                 st: ControlSettings, options: BenchOptions) -> RunRecord:
        started = time.perf_counter()
        device = options.device
        seed_everything(seed)
        policy = copy.deepcopy(base)
        for p in policy.parameters():
            p.requires_grad_(True)
        policy.train()
        cls = ALGORITHMS.get(row.algorithm)
        context = RunContext(vocab=base.vocab, max_len=base.max_len, valid=valid, reward=None,
                             potential=target.potential if cls.requires.potential else None, proposal=base,
                             samples_per_step=batch_size, estimate_samples=st.lambda_samples // 4,
                             budget_steps=steps)
        kwargs: dict[str, Any] = {}
        if cls.requires.reward:
            assert reward is not None, "reward rows run on pointwise tasks only"
            context = replace(context, reward=reward.name)
        kwargs.update(cls.bench_kwargs(context))
        if cls.requires.reward:
            kwargs["reward"] = reward
        kwargs.update(dict(row.overrides))
        algo_kwargs, fit_kwargs = options.for_algorithm(row.algorithm)
        kwargs.update(algo_kwargs)
        algorithm = make_algorithm(row.algorithm, policy, **kwargs)
        generator = torch.Generator(device=device).manual_seed(seed + 7)

        def evaluate(alg) -> dict[str, float]:
            scores = control_metrics(alg.policy, base, target, base.vocab, num_samples=st.eval_samples,
                                     self_bleu_samples=st.self_bleu_samples, generator=generator)
            scores["valid_ce"] = float(-sequence_log_probs(alg.policy, valid).mean())
            scores.update(variance_diagnostics(alg, target, st.variance_samples))
            return scores

        curve = SampleCurve(batch_size)
        fit_config = FitConfig(max_steps=steps, max_epochs=None, batch_size=batch_size, lr=st.lr,
                               clip_grad_norm=st.clip_grad_norm, eval_every=eval_every, patience=None,
                               restore_best=False, evaluate_at_start=True, device=str(device), seed=seed,
                               progress=options.bars)
        fit_config = replace(fit_config, **{**cls.fit_overrides, **fit_kwargs})
        fit(algorithm, fit_data if cls.uses_data else None, evaluate=evaluate, monitor="kl_p_pi", mode="min",
            callbacks=[curve], config=fit_config)
        final = curve.points[-1] if curve.points and curve.points[-1]["samples"] == steps * batch_size else None
        if final is None:  # the last step was not an evaluation step
            algorithm.eval()
            final = {"samples": float(steps * batch_size), **evaluate(algorithm)}
            curve.points.append(final)
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

    paths = []
    main = [c for c in curves if c["experiment"] == "main"]
    for task in dict.fromkeys(c["task"] for c in main):
        cs = [c for c in main if c["task"] == task]
        fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
        for label in dict.fromkeys(c["label"] for c in cs):
            mine = [c for c in cs if c["label"] == label]
            for ax, (key, _title) in zip(axes, PANELS):
                xs, mean, lo, hi = _band(mine, key)
                if not xs:
                    continue
                line, = ax.plot(xs, mean, label=label)
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
        for ax, (_, title) in zip(axes, PANELS):
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("samples")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"control task {task} ({cs[0]['kind']}): metrics vs samples, mean and min–max over seeds")
        fig.tight_layout()
        paths.append(out / f"control_curves_{task}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    sweep = [c for c in curves if c["experiment"] == "sweep"]
    if sweep:
        tasks = list(dict.fromkeys(c["task"] for c in sweep))
        fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            sizes = sorted({c["batch_size"] for c in sweep if c["task"] == task})
            colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
        fig.tight_layout()
        paths.append(out / "control_batch_sweep.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    var = [c for c in main if c["label"] in ("dpg_off", "gdcpp")]
    if var:
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
        fig.tight_layout()
        paths.append(out / "control_variance.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


__all__ = [
    "DIVERGENCES", "QUICK_SETTINGS", "TASK_NAMES", "ControlSettings", "ControlSuite", "ControlTarget", "ControlTask",
    "PointwiseReward", "Row", "advantage_stats", "control_metrics", "control_rows", "control_tasks",
    "divergences_from_pool", "dpg_advantage", "gradient_variance", "more_female_than_male", "prepare_target",
    "variance_diagnostics", "word_feature",
]
