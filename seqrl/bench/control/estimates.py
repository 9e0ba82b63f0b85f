"""What the control suite measures ([GDC++] Sec. 4.2, 4.5): the target p = P/Z with λ fitted by SNIS, KL(p‖π)
and TVD by importance sampling from a, E_π φ, KL(π‖a), Distinct-n, Self-BLEU, and the variance diagnostics
Var(A), Var(G), E|A| of DPG's updates (Eq. 17–21)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ...algorithms.dpg import DPGBase
from ...ebm.constraints import ConstraintPotential
from ...ebm.sampling import LogZEstimate, ProposalDraw, base_log_ratio, draw, estimate_divergences, estimate_log_z
from ...ebm.training1 import Training1Config, Training1Result
from ...metrics import distinct_n, self_bleu, sequence_log_probs
from ...policies.base import AutoregressivePolicy
from ...types import SequenceBatch, Vocab
from ...utils import eval_mode
from .tasks import ControlTask


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


__all__ = ["ControlTarget", "advantage_stats", "control_metrics", "divergences_from_pool", "dpg_advantage",
           "gradient_variance", "prepare_target", "variance_diagnostics"]
