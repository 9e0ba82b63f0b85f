"""f-DPG (Go et al., 2023, "Aligning language models with preferences through f-divergence minimization").

Minimize D_f(π_θ‖p) = Σ_x p(x) f(π_θ(x)/p(x)) (f convex, f(1) = 0) for a target p = P/Z:

    ∇_θ D_f(π_θ‖p) = Σ_x p f'(π_θ/p) ∇π_θ/p = E_π[f'(π_θ/p) ∇ log π_θ] = E_{x~q}[(π_θ/q) f'(π_θ/p) ∇ log π_θ],

an estimate from samples of any proposal q that covers π_θ. Any constant b may be subtracted from f', since
E_q[(π_θ/q) b ∇ log π_θ] = b ∇ Σ π_θ = 0 ([GDC++] Fact 2's argument). The divergences (t = π/p):

===========  =========================================  =============================  ==========================
divergence   D_f(π‖p)                                   f(t)                           f'(t)
===========  =========================================  =============================  ==========================
``kl``       KL(p‖π) = Σ p log p/π (forward; DPG's)     −log t                         −1/t
``rkl``      KL(π‖p) = Σ π log π/p (KL-control's)       t log t                        log t + 1
``js``       JS = ½KL(π‖m) + ½KL(p‖m), m = (π + p)/2    ½[t log 2t/(1+t) + log 2/(1+t)]  ½ log 2t/(1+t)
``tv``       TVD = ½ Σ |π − p|                          ½ |t − 1|                      ½ sign(t − 1)
``chi2``     Pearson χ²(π‖p) = Σ (π − p)²/p             (t − 1)²                       2 (t − 1)
===========  =========================================  =============================  ==========================

Convention: Go et al. write D_f(π_θ‖p) = E_p f(π_θ/p), so their forward KL is f(t) = −log t, whose weight
(π/q)·f'(π/p) = −p/q makes the update exactly DPG's −E_q[(p/q) ∇ log π] ([DPG] Eq. 6): ``kl`` here is KL(p‖π),
DPG's direction (tested equal to :func:`~seqrl.algorithms.dpg.dpg_loss`). ``rkl`` with p = p_z is KL-control's
gradient divided by β ([GDC++] Eq. 10). JS is taken with its ½ (values in [0, log 2]); without it the
gradient only doubles. ``rkl`` and ``chi2`` are infinite when π puts mass where P = 0 (pointwise constraints):
the loss then raises instead of returning an infinite step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import register_algorithm
from .dpg import DPGBase, DPGRollout
from .reinforce import leave_one_out_mean

Divergence = Literal["kl", "rkl", "js", "tv", "chi2"]
DIVERGENCES: tuple[str, ...] = get_args(Divergence)


def f_prime(log_t: Tensor, divergence: str) -> Tensor:
    """f'(t) at t = π/p given log t (float64; see the module's table). ``kl``'s −1/t is −exp(−log t)."""
    log_t = log_t.double()
    if divergence == "kl":
        return -torch.exp(-log_t)
    if divergence == "rkl":
        return log_t + 1.0
    if divergence == "js":
        return 0.5 * (math.log(2.0) - F.softplus(-log_t))  # ½ log 2t/(1+t) = ½ (log 2 − log(1 + 1/t))
    if divergence == "tv":
        return 0.5 * torch.sign(log_t)
    if divergence == "chi2":
        return 2.0 * torch.expm1(log_t)
    raise ValueError(f"unknown divergence {divergence!r}; expected one of {list(DIVERGENCES)}")


def fdpg_weights(log_pi: Tensor, log_p: Tensor, log_q: Tensor, divergence: str) -> Tensor:
    """[B] float64 (π/q)·f'(π/p) (Go et al., 2023; module docstring), from log π, normalized log p, log q.

    ``kl`` is formed as −exp(log p − log q), finite where π/p would overflow; where p = 0 the weight is
    its limit (kl: 0, js: ½ log 2·π/q, tv: ½·π/q) or, for rkl and chi2, an error (the divergence is ∞).
    """
    if not (log_pi.dim() == 1 and log_pi.shape == log_p.shape == log_q.shape):
        raise ValueError(f"log_pi, log_p and log_q must all be [B], got {tuple(log_pi.shape)}, "
                         f"{tuple(log_p.shape)}, {tuple(log_q.shape)}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; expected one of {list(DIVERGENCES)}")
    log_pi, log_p, log_q = log_pi.detach().double(), log_p.detach().double(), log_q.detach().double()
    if bool(log_pi.isnan().any() | log_p.isnan().any() | log_q.isnan().any()):
        raise ValueError("fdpg: NaN in log π, log p or log q")
    if divergence == "kl":
        return -(log_p - log_q).exp()
    if divergence in ("rkl", "chi2") and bool((log_p == -math.inf).any()):
        raise ValueError(f"fdpg: divergence {divergence!r} is infinite here: π puts mass on samples where P = 0 "
                         "(pointwise constraints); use 'kl', 'js' or 'tv', or a potential with full support")
    return (log_pi - log_q).exp() * f_prime(log_pi - log_p, divergence)


def fdpg_loss(logp_pi: Tensor, log_p: Tensor, log_q: Tensor, divergence: str,
              baseline: Tensor | float | None = None,
              reduction: Literal["mean", "none"] = "mean", *,
              log_pi: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Surrogate (1/B) Σ_b w_b log π_θ(x_b), w = (π/q)(f'(π/p) − b): its gradient estimates ∇ D_f(π_θ‖p) (Go et al.).

    Args:
        logp_pi: [B] log π_θ(x), differentiable. log_p: [B] log p(x) = log P(x) − log Z (or Ẑ).
        log_q: [B] log q(x) of the proposal that drew x.
        divergence: one of ``kl``, ``rkl``, ``js``, ``tv``, ``chi2``.
        baseline: b, a scalar or [B] (no gradient), independent of x_b; None: none.
        reduction: ``"mean"`` over the batch, or ``"none"`` for the [B] per-sample surrogates.
        log_pi: [B] log π_θ(x) of π as a distribution (eval mode) for the weights; default ``logp_pi``.
    Returns:
        (loss, weights w [B], in the dtype of ``logp_pi``).
    Assumes: x ~ q, or the gradient is biased.
    """
    log_pi = logp_pi if log_pi is None else log_pi
    weight = fdpg_weights(log_pi, log_p, log_q, divergence)
    if baseline is not None:
        b = baseline.detach().double() if isinstance(baseline, Tensor) else float(baseline)
        weight = weight - (log_pi.detach().double() - log_q.detach().double()).exp() * b
    weight = weight.to(logp_pi.dtype).detach()
    per_sample = weight * logp_pi
    return (per_sample if reduction == "none" else per_sample.mean()), weight


@register_algorithm("fdpg")
class FDPG(DPGBase):
    """f-DPG (Go et al., 2023): off-policy DPG toward p = P/Ẑ minimizing D_f(π‖p) for the chosen ``divergence``.

    Shares DPG's proposal q, its running Ẑ (the mean importance weight P/q of every batch so far) and the
    KL-adaptive proposal update of GDC++ ([GDC++] Alg. 1); only the weight differs: (π/q)(f'(π/p̂) − b),
    p̂ = P/Ẑ. With ``divergence="kl"`` and b = −1 it is GDC++'s update (A = p/q − π/q).
    """

    in_default_bench = False  # its rows, one per divergence, are ``seqrl bench control``'s (not the GAM table's)

    @dataclass(frozen=True, kw_only=True)
    class Config(DPGBase.Config):
        divergence: Divergence = "js"
        """D_f(π‖p) to minimize. Default JS: Go et al. (2023) find that no divergence wins everywhere, and that
        Jensen–Shannon strikes the best balance of alignment and diversity, often well ahead of forward KL."""
        baseline: bool = True
        """Subtract b·π/q, b the leave-one-out mean of the batch's other (π/q)f'(π/p̂): an estimate of
        E_π f'(π/p) independent of the sample it centres, so the update stays unbiased (for ``kl`` it is
        ≈ −Z/Ẑ, GDC++'s baseline Z·π/q)."""
        proposal_update: Literal["never", "valid_ce", "kl"] = "kl"
        """q ← π_θ when the estimated KL(p‖π_θ) < KL(p‖q) ([GDC++] Alg. 1)."""

        def check(self) -> None:
            super().check()
            if self.divergence not in DIVERGENCES:
                raise ValueError(f"fdpg: unknown divergence {self.divergence!r}; expected one of {list(DIVERGENCES)}")
            if not self.normalize_by_z:
                raise ValueError("fdpg: normalize_by_z=False is not available: p = P/Ẑ enters f'(π/p) non-linearly")

    config: Config

    def loss(self, rollout: DPGRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """The f-DPG surrogate of :func:`fdpg_loss` on DPG's rollout (same q, Ẑ and proposal updates)."""
        logp_pi = self.policy.sequence_log_prob(rollout.batch)
        log_z = self.log_z() if rollout.log_z_before is None else rollout.log_z_before
        log_pi = self._eval_log_prob(rollout.batch, logp_pi)
        log_p = rollout.log_weight.double() + rollout.log_q.double() - log_z  # log P/Ẑ
        baseline = None
        if self.config.baseline:
            baseline = leave_one_out_mean(fdpg_weights(log_pi, log_p, rollout.log_q, self.config.divergence), 1)
        loss, weight = fdpg_loss(logp_pi, log_p, rollout.log_q, self.config.divergence, baseline, log_pi=log_pi)
        return loss, {"log_z": log_z, "weight_abs": weight.abs().mean(),
                      "episodes": float(self.episodes)}
