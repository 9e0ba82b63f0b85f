"""Monte-Carlo tools over potentials: rejection sampling, SNIS moments, importance-sampled log Z,
KL(p‖π) and TVD estimates. All batched on the proposal's device."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..types import SequenceBatch, concat_batches
from ..utils import eval_mode
from .base import PotentialError, checked_log_potential


class BoundViolation(PotentialError):
    """A sample whose log P(x) − log q(x) exceeds the rejection-sampling bound."""


@dataclass(frozen=True)
class ProposalDraw:
    """Samples of a proposal q with log q(x) and log P(x) − log q(x)."""

    batch: SequenceBatch
    log_q: Tensor
    log_ratio: Tensor


LogRatioFn = Callable[[SequenceBatch, Tensor], Tensor]


def potential_log_ratio(potential, require_support: bool = True) -> LogRatioFn:
    """log P(x) − log q(x) from a potential (raises on NaN and on P = 0 over the whole batch).

    A sample where q(x) = 0 but it was drawn anyway cannot occur; where P > 0 but q gives no
    mass, no sample of q can show it: the check there is on the proposal's support, below.
    ``require_support=False`` lets a batch with P = 0 everywhere through (a trainer that has
    already seen support may meet such a batch by chance)."""

    def ratio(batch: SequenceBatch, log_q: Tensor) -> Tensor:
        log_p = checked_log_potential(potential, batch, require_support=require_support).to(log_q.device)
        if bool((log_q == -math.inf).any()):
            raise PotentialError("the proposal assigned zero probability to one of its own samples")
        return log_p - log_q

    return ratio


def base_log_ratio(potential) -> LogRatioFn:
    """log P(x) − log r(x) for a GAM whose proposal is its own base r (no second pass of r)."""

    def ratio(batch: SequenceBatch, log_q: Tensor) -> Tensor:
        return potential.log_ratio_to_base(batch).to(log_q.device)

    return ratio


@torch.no_grad()
def draw(proposal, num: int, log_ratio: LogRatioFn, generator: torch.Generator | None = None,
         context: SequenceBatch | None = None) -> ProposalDraw:
    """``num`` samples of the proposal (eval mode) with their log q and log ratio; with ``context`` (prompts),
    ``num`` completions of each prompt, prompt-major, the prompts in the batch's context."""
    with eval_mode(proposal):
        samples = proposal.sample(num, context, generator=generator)
    log_q = samples.logp
    return ProposalDraw(samples.batch, log_q, log_ratio(samples.batch, log_q))


@dataclass(frozen=True)
class RejectionResult:
    samples: SequenceBatch
    proposed: int
    acceptance_rate: float


@torch.no_grad()
def rejection_sample(
    proposal,
    log_ratio: LogRatioFn,
    num: int,
    log_bound: float,
    *,
    chunk: int = 10_000,
    max_proposals: int = 50_000_000,
    generator: torch.Generator | None = None,
    budget: int | None = None,
) -> RejectionResult:
    """Exact samples of p ∝ P by rejection from q: accept x ~ q with prob exp(log P/q − log β).

    ``log_bound`` must bound log P(x) − log q(x) everywhere ([DPG] A.2); a violation raises
    :class:`BoundViolation` instead of silently biasing the samples.

    ``budget``: draw exactly this many proposals and return every accepted one (``num`` is then ignored):
    a sampling budget in draws of q, the unit DPG's episodes count in; an error if none is accepted.
    """
    if budget is not None:
        return _rejection_budget(proposal, log_ratio, log_bound, budget, chunk, generator)
    if num < 1:
        raise ValueError(f"num must be ≥ 1, got {num}")
    kept: list[SequenceBatch] = []
    accepted = proposed = 0
    while accepted < num:
        if proposed >= max_proposals:
            raise PotentialError(
                f"rejection sampling accepted {accepted} of {proposed} proposals (bound log β = {log_bound:.3g}); "
                "the bound is too loose or p is far from q"
            )
        d = draw(proposal, chunk, log_ratio, generator)
        excess = d.log_ratio - log_bound
        if bool((excess > 1e-4).any()):
            raise BoundViolation(f"log P/q exceeds the bound by {float(excess.max()):.3g}: the bound is wrong")
        u = torch.rand(chunk, device=excess.device, generator=_matching(generator, excess.device))
        keep = u.log() < excess
        proposed += chunk
        n_keep = int(keep.sum())
        if n_keep:
            kept.append(d.batch.index(keep.nonzero().flatten()).to("cpu"))
            accepted += n_keep
    samples = concat_batches(kept).index(torch.arange(num))
    return RejectionResult(samples, proposed, accepted / proposed)


def _accept(proposal, log_ratio: LogRatioFn, log_bound: float, n: int,
            generator: torch.Generator | None) -> SequenceBatch:
    """The accepted ones among ``n`` draws of q (rejection step of :func:`rejection_sample`)."""
    d = draw(proposal, n, log_ratio, generator)
    excess = d.log_ratio - log_bound
    if bool((excess > 1e-4).any()):
        raise BoundViolation(f"log P/q exceeds the bound by {float(excess.max()):.3g}: the bound is wrong")
    u = torch.rand(n, device=excess.device, generator=_matching(generator, excess.device))
    return d.batch.index((u.log() < excess).nonzero().flatten()).to("cpu")


def _rejection_budget(proposal, log_ratio: LogRatioFn, log_bound: float, budget: int, chunk: int,
                      generator: torch.Generator | None) -> RejectionResult:
    """Every accepted sample among exactly ``budget`` draws of q."""
    if budget < 1:
        raise ValueError(f"budget must be ≥ 1, got {budget}")
    kept = [_accept(proposal, log_ratio, log_bound, min(chunk, budget - start), generator)
            for start in range(0, budget, chunk)]
    kept = [k for k in kept if k.batch_size]
    if not kept:
        raise PotentialError(f"rejection sampling accepted none of {budget} proposals (bound log β = "
                             f"{log_bound:.3g}): nothing to train on")
    samples = concat_batches(kept)
    return RejectionResult(samples, budget, samples.batch_size / budget)


def _matching(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    if generator is None or generator.device.type == torch.device(device).type:
        return generator
    return None


def snis_moments(values: Tensor, log_weights: Tensor) -> Tensor:
    """Self-normalized importance sampling: Σ_i w_i f(x_i) / Σ_i w_i ([DPG] A.2); f is [N, K]."""
    if bool((log_weights == -math.inf).all()):
        raise PotentialError("every importance weight is zero: the potential has no support under the proposal")
    w = torch.softmax(log_weights.double(), 0)
    return (w[:, None] * values.double()).sum(0)


@dataclass(frozen=True)
class LogZEstimate:
    log_z: float
    stderr: float
    """Standard error of log Ẑ (delta method: sd(w) / (√N · mean(w)))."""


def estimate_log_z(log_weights: Tensor) -> LogZEstimate:
    """log Z = log E_q[P/q] ≈ log mean_i w_i from i.i.d. proposal samples."""
    lw = log_weights.double()
    if bool((lw == -math.inf).all()):
        raise PotentialError("every importance weight is zero: Z is estimated as 0")
    n = lw.numel()
    log_z = float(torch.logsumexp(lw, 0) - math.log(n))
    rel = (lw - log_z).exp()  # w / Ẑ
    se = float(rel.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.inf
    return LogZEstimate(log_z, se)


def estimate_divergences(log_p_unnorm: Tensor, log_pi: Tensor, log_z: float,
                         log_q: Tensor | None = None) -> dict[str, float]:
    """KL(p‖π) and TVD(p, π) by importance sampling from x ~ q (default q = π), p = P/Z:
    KL ≈ mean (p/q)·log(p/π), TVD ≈ ½ mean |p/q − π/q| ([GDC++] Sec. 4.5: E_π|A| = 2·TVD).

    Sample from a q that covers p (e.g. the proposal r of a GAM): with q = π, mass that π
    misses never shows up in the sample and the estimate reads low exactly when π is worst."""
    log_q = log_pi if log_q is None else log_q
    log_p = log_p_unnorm.double() - log_z
    w = (log_p - log_q.double()).exp()  # p/q
    log_ratio = log_p - log_pi.double()  # log p/π
    kl = torch.where(w > 0, w * log_ratio, torch.zeros_like(w)).mean()
    tvd = 0.5 * (w - (log_pi.double() - log_q.double()).exp()).abs().mean()
    return {"kl_p_pi": float(kl), "tvd": float(tvd)}
