"""GAM Training-1 ([DPG] Sec. 3.1, A.2): fit λ so that model moments match data moments.

∇_λ log p_λ(D) = |D|·(E_D φ − E_{p_λ} φ) ([DPG] Eq. 3, 7): λ minimizes the convex dual
f(λ) = log Z(λ) − λ·E_D φ, whose gradient is E_{p_λ} φ − E_D φ and whose Hessian is Cov_{p_λ} φ.
The default solver is damped Newton on f with a backtracking line search (exact on enumerated
moments, or on the SNIS dual of the current proposal pool); ``solver="sgd"`` keeps the authors'
schedule λ ← λ + lr_k·(E_D φ − Ê_{p_λ} φ), lr_k = lr0/(1+k). The model moments Ê come from
SNIS with proposal r, rejection sampling from r, or (tests) exact enumeration.

Any potential of the form log P(x) = log r(x) + λ·φ(x) + log 1[x ∈ S] fits (:class:`MomentPotential`): a GAM
(S = everything), or GDC's constraint EBM (S = where the pointwise constraints hold, [GDC++] Eq. 16), whose
target moments are given (``moments=``) instead of taken from data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor

from ..policies.base import AutoregressivePolicy
from ..types import SequenceBatch
from .base import PotentialError
from .sampling import draw, snis_moments


class MomentPotential(Protocol):
    """log P_λ(x) = log r(x) + λ·φ(x) (+ log 1[x ∈ S] where it defines ``log_support``): what Training-1 fits."""

    @property
    def base(self) -> AutoregressivePolicy: ...

    @property
    def features(self) -> Callable[[SequenceBatch], Tensor]:
        """φ: batch → [B, K]."""
        ...

    @property
    def lam(self) -> Tensor: ...

    def log_ratio_bound(self) -> float:
        """An upper bound of λ·φ(x) over the support (rejection sampling)."""
        ...

    def log_potential(self, batch: SequenceBatch) -> Tensor: ...


def log_support(potential: MomentPotential, batch: SequenceBatch) -> Tensor:
    """[B] float64 log 1[x ∈ S]: the potential's ``log_support`` (0 or -inf), or 0 everywhere (a GAM)."""
    support = getattr(potential, "log_support", None)
    if support is None:
        return torch.zeros(batch.batch_size, dtype=torch.float64, device=batch.device)
    return support(batch).double()


Method = Literal["snis", "rs", "exact"]
Solver = Literal["newton", "sgd"]


@dataclass(frozen=True, kw_only=True)
class Training1Config:
    method: Method = "snis"
    """How model moments are estimated: 'snis', 'rs' (rejection sampling) or 'exact'."""
    num_samples: int = 10_000
    """Proposal samples per moment estimate."""
    resample_every: int | None = 1
    """Draw fresh proposal samples every this many steps; None draws once and reweights
    the same pool at every λ (common random numbers: cheap, and the fit converges to the
    λ that matches moments on that pool)."""
    solver: Solver = "newton"
    """'newton': damped Newton on the dual f(λ) = log Z(λ) − λ·E_D φ (Hessian Cov_{p_λ} φ), step
    capped at ``max_step`` per coordinate, backtracking (Armijo) line search on f for 'exact' and
    'snis' (f on the pool), and scaled by 1/j on the j-th fresh pool (Robbins–Monro damping of the
    sampling noise; j = 1 for 'exact' and for a single pool). 'sgd': the authors' schedule with ``lr0``."""
    lr0: float = 10.0
    """'sgd' only: initial step size; step k uses lr0 / (1 + k)."""
    lr_decay: bool = True
    """'sgd' only: use lr0 / (1 + k) (True) or a constant lr0 (False)."""
    max_steps: int = 200
    tolerance: float = 1e-6
    """Stop when max_i |E_D φ_i − Ê φ_i| is below this (with SNIS/RS pools that are redrawn, the
    estimate's own noise usually stays above it and the fit runs ``max_steps``)."""
    max_step: float = 5.0
    """'newton': largest |Δλ_i| of one step (a trust region)."""
    max_abs_lambda: float = 1000.0
    """|λ_i| is kept ≤ this. A feature whose data mean sits at the edge of its range (a binary
    feature that every or no sequence of D has; all of D at the longest length for M, v) has its
    optimum at λ = ±∞: Newton then gains about one unit of λ·φ per step along that direction and
    stops at ``tolerance`` with λ finite (|λ_i| ≈ log(1/tolerance) for a binary feature, a few hundred
    for M, v at n = 7). The box keeps λ finite where the moments cannot reach the data at all."""
    seed: int = 0


@dataclass
class Training1Result:
    lam: Tensor
    data_moments: Tensor
    model_moments: Tensor
    steps: int
    converged: bool
    history: list[float] = field(default_factory=list)
    """max-norm moment gap at each step."""


def exact_moments(potential: MomentPotential, space: SequenceBatch) -> Tensor:
    """E_{p_λ} φ by enumeration of the whole space."""
    with torch.no_grad():
        log_p = potential.log_potential(space).double()
        phi = potential.features(space).double()
    return snis_moments(phi, log_p)  # softmax(log P) are the exact probabilities


def _check_request(config: Training1Config, data: SequenceBatch | None, moments: Tensor | None,
                   space: SequenceBatch | None) -> None:
    if (data is None) == (moments is None):
        raise ValueError("fit_lambda takes the target moments from data or from moments=, exactly one of them")
    if data is not None and data.batch_size == 0:
        raise ValueError("empty data: Training-1 needs sequences to take moments of")
    if config.method == "exact" and space is None:
        raise ValueError("method='exact' needs the enumerated space")
    if config.method not in ("snis", "rs", "exact"):
        raise ValueError(f"unknown Training-1 method {config.method!r}; expected 'snis', 'rs' or 'exact'")
    if config.solver not in ("newton", "sgd"):
        raise ValueError(f"unknown Training-1 solver {config.solver!r}; expected 'newton' or 'sgd'")


def _target_moments(potential: MomentPotential, data: SequenceBatch | None, moments: Tensor | None) -> Tensor:
    """μ̄ [K] (float64, CPU): E_D φ of the data, or the moments given."""
    if data is not None:
        return potential.features(data.to(potential.base.device)).double().mean(0).cpu()
    mu = torch.as_tensor(moments, dtype=torch.float64).detach().cpu()
    if mu.shape != potential.lam.shape:
        raise ValueError(f"moments must have shape {tuple(potential.lam.shape)} (one per feature), "
                         f"got {tuple(mu.shape)}")
    return mu


@dataclass
class _Pool:
    """What the moments are taken over: φ(x) and log r(x)·1[S] of the space or of samples of r, and the
    uniforms of rejection sampling."""

    phi: Tensor
    log_base: Tensor
    u: Tensor | None = None


def _draw_pool(potential: MomentPotential, config: Training1Config, generator: torch.Generator) -> _Pool:
    """``num_samples`` x ~ r: weight e^{λ·φ}·1[S] (SNIS), or accepted with e^{λ·φ − bound} (RS)."""
    r = potential.base
    pool = draw(r, config.num_samples, lambda b, lq: torch.zeros_like(lq), generator)
    phi = potential.features(pool.batch).double()
    log_base = log_support(potential, pool.batch).to(phi.device)
    if bool((log_base == -math.inf).all()):
        raise PotentialError(f"none of the {config.num_samples} samples of the proposal r lies in the "
                             "potential's support (P = 0 on all of them): no moment can be estimated")
    u = torch.rand(config.num_samples, device=phi.device, generator=generator, dtype=torch.float64)
    return _Pool(phi, log_base, u)


def _model_moments(potential: MomentPotential, config: Training1Config, pool: _Pool,
                   lam: Tensor) -> tuple[Tensor, Tensor]:
    """E_{p_λ} φ and Cov_{p_λ} φ on the pool: self-normalized weights, or the accepted samples of RS."""
    phi, log_base = pool.phi, pool.log_base
    if config.method != "rs":
        return _moments(phi, log_base + phi @ lam)
    assert pool.u is not None  # drawn with every pool
    accept = pool.u.log() < (log_base + phi @ lam - potential.log_ratio_bound())
    if not bool(accept.any()):
        raise RuntimeError("rejection sampling accepted no sample: increase num_samples")
    return _moments(phi[accept], torch.zeros(int(accept.sum()), dtype=torch.float64, device=phi.device))


def _solver_step(config: Training1Config, pool: _Pool, mu: Tensor, lam: Tensor, gap: Tensor, hessian: Tensor,
                 step: int, pools: int) -> Tensor | None:
    """The next λ: the authors' SGD schedule, or a damped Newton step (line-searched on the dual where there is
    one); None when no decrease is left at float64 precision (λ is optimal on these moments)."""
    if config.solver == "sgd":
        return lam + (config.lr0 / step if config.lr_decay else config.lr0) * gap
    direction = _newton_direction(hessian, gap, config.max_step)
    scale = 1.0 / max(pools, 1)
    if config.method == "rs":  # no objective to search on: the damped step itself
        return (lam + scale * direction).clamp(-config.max_abs_lambda, config.max_abs_lambda)
    new = _line_search(pool.log_base, pool.phi, mu, lam, -gap, direction, config.max_abs_lambda)
    return None if new is None else lam + scale * (new - lam)


def fit_lambda(
    potential: MomentPotential,
    data: SequenceBatch | None,
    config: Training1Config | None = None,
    *,
    space: SequenceBatch | None = None,
    moments: Tensor | None = None,
) -> Training1Result:
    """λ = argmin_λ log Z(λ) − λ·μ̄, i.e. E_{p_λ} φ = μ̄ = E_D φ ([DPG] Eq. 3, 7); sets ``potential.lam`` in place.

    ``moments`` gives the target μ̄ [K] directly (GDC's constraints; ``data`` is then None). Proposal samples
    outside the potential's support S weigh 0, so the model moments are those of p_λ ∝ r·e^{λ·φ}·1[S]."""
    config = config or Training1Config()
    _check_request(config, data, moments, space)
    data_moments = _target_moments(potential, data, moments)
    generator = torch.Generator(device=potential.base.device).manual_seed(config.seed)
    pool = _Pool(*_exact_space(potential, space)) if config.method == "exact" and space is not None else None
    lam = potential.lam.detach().double().to(potential.base.device if pool is None else pool.phi.device)
    mu = data_moments.to(lam.device)
    history: list[float] = []
    model = torch.zeros_like(data_moments)
    converged, pools, step = False, 0, 0
    for step in range(1, config.max_steps + 1):
        if config.method != "exact" and (pool is None or (config.resample_every and
                                                          (step - 1) % config.resample_every == 0)):
            pool = _draw_pool(potential, config, generator)
            lam, mu, pools = lam.to(pool.phi.device), mu.to(pool.phi.device), pools + 1
        assert pool is not None
        model_dev, hessian = _model_moments(potential, config, pool, lam)
        model = model_dev.cpu()
        gap = mu - model_dev
        history.append(float(gap.abs().max()))
        if history[-1] < config.tolerance:
            converged = True
            break
        new = _solver_step(config, pool, mu, lam, gap, hessian, step, pools)
        if new is None:
            break
        lam = new
        potential.lam.copy_(lam.to(potential.lam))
    return Training1Result(potential.lam.detach().clone(), data_moments, model, step, converged, history)


def _exact_space(potential: MomentPotential, space: SequenceBatch) -> tuple[Tensor, Tensor]:
    """φ(x) and log r(x) + log 1[x ∈ S] (float64) for every x of the enumerated space."""
    r = potential.base
    with torch.no_grad():
        was_training = r.training
        r.eval()
        try:
            log_r = r.sequence_log_prob(space.to(r.device)).double()
        finally:
            r.train(was_training)
        phi = potential.features(space.to(r.device)).double()
        log_r = log_r + log_support(potential, space.to(r.device)).to(log_r)
    if bool((log_r == -math.inf).all()):
        raise PotentialError("the potential's support holds no sequence of the space (P = 0 everywhere)")
    return phi, log_r


def _dual(log_base: Tensor, phi: Tensor, mu: Tensor, lam: Tensor) -> float:
    """f(λ) = log Σ_x e^{log r(x) + λ·φ(x)} − λ·E_D φ: the negative mean data log-likelihood of p_λ ([DPG] Eq. 3)."""
    return float(torch.logsumexp(log_base + phi @ lam, 0) - mu @ lam)


def _moments(phi: Tensor, log_w: Tensor) -> tuple[Tensor, Tensor]:
    """E_w φ and Cov_w φ under weights w ∝ e^{log_w} ([DPG] A.2): the dual's gradient + μ̄ and its Hessian."""
    w = torch.softmax(log_w, 0)
    mean = w @ phi
    centred = phi - mean
    return mean, centred.T @ (w[:, None] * centred)


def _newton_direction(hessian: Tensor, gap: Tensor, max_step: float) -> Tensor:
    """d = Cov⁻¹ (E_D φ − E_{p_λ} φ) (eigenvalues floored for constant or collinear features), capped at max_step."""
    evals, evecs = torch.linalg.eigh(hessian)
    floor = 1e-12 * max(float(evals.max()), 1e-300)
    direction = evecs @ ((evecs.T @ gap) / evals.clamp(min=floor))
    largest = float(direction.abs().max())
    return direction * (max_step / largest) if largest > max_step else direction


def _line_search(log_base: Tensor, phi: Tensor, mu: Tensor, lam: Tensor, grad: Tensor, direction: Tensor,
                 box: float) -> Tensor | None:
    """Backtracking (Armijo) search along the projected step: the first λ' = clip(λ + t·d), t = 1, ½, …,
    with f(λ') ≤ f(λ) + 10⁻⁴ ∇f·(λ' − λ); None when no t > 2⁻⁴⁰ decreases f."""
    f0 = _dual(log_base, phi, mu, lam)
    t = 1.0
    for _ in range(40):
        new = (lam + t * direction).clamp(-box, box)
        slope = float(grad @ (new - lam))
        if slope < 0 and _dual(log_base, phi, mu, new) <= f0 + 1e-4 * slope:
            return new
        t /= 2
    return None


def lam_summary(result: Training1Result, names: list[str]) -> dict[str, float]:
    out = {f"lambda_{n}": float(v) for n, v in zip(names, result.lam)}
    out.update({f"moment_data_{n}": float(v) for n, v in zip(names, result.data_moments)})
    out.update({f"moment_model_{n}": float(v) for n, v in zip(names, result.model_moments)})
    out["moment_gap"] = result.history[-1] if result.history else math.nan
    return out
