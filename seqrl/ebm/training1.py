"""GAM Training-1 ([DPG] Sec. 3.1, A.2): fit λ so that model moments match data moments.

∇_λ log p_λ(D) = |D|·(E_D φ − E_{p_λ} φ) ([DPG] Eq. 3, 7); λ ← λ + lr_k·(E_D φ − Ê_{p_λ} φ)
with lr_k = lr0/(1+k) (the authors' code: 10/(1+epoch)). The model moments Ê come from
SNIS with proposal r, rejection sampling from r, or (tests) exact enumeration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from ..types import SequenceBatch
from .gam import GAMPotential
from .sampling import draw, snis_moments

Method = Literal["snis", "rs", "exact"]


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
    lr0: float = 10.0
    """Initial step size; step k uses lr0 / (1 + k)."""
    lr_decay: bool = True
    """Use lr0 / (1 + k) (True) or a constant lr0 (False)."""
    max_steps: int = 200
    tolerance: float = 1e-3
    """Stop when max_i |E_D φ_i − Ê φ_i| is below this."""
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


def exact_moments(potential: GAMPotential, space: SequenceBatch) -> Tensor:
    """E_{p_λ} φ by enumeration of the whole space."""
    with torch.no_grad():
        log_p = potential.log_potential(space).double()
        phi = potential.features(space).double()
    return snis_moments(phi, log_p)  # softmax(log P) are the exact probabilities


def fit_lambda(
    potential: GAMPotential,
    data: SequenceBatch,
    config: Training1Config | None = None,
    *,
    space: SequenceBatch | None = None,
) -> Training1Result:
    """Fit ``potential.lam`` in place by moment matching on ``data``; return moments and λ."""
    config = config or Training1Config()
    if data.batch_size == 0:
        raise ValueError("empty data: Training-1 needs sequences to take moments of")
    if config.method == "exact" and space is None:
        raise ValueError("method='exact' needs the enumerated space")
    if config.method not in ("snis", "rs", "exact"):
        raise ValueError(f"unknown Training-1 method {config.method!r}; expected 'snis', 'rs' or 'exact'")
    features, r = potential.features, potential.base
    data_moments = features(data.to(r.device)).double().mean(0).cpu()
    generator = torch.Generator(device=r.device).manual_seed(config.seed)
    pool = phi = u = None
    history: list[float] = []
    model = torch.zeros_like(data_moments)
    converged = False
    step = 0
    for step in range(1, config.max_steps + 1):
        if config.method == "exact":
            model = exact_moments(potential, space).cpu()
        else:
            if pool is None or (config.resample_every and (step - 1) % config.resample_every == 0):
                pool = draw(r, config.num_samples, lambda b, lq: torch.zeros_like(lq), generator)
                phi = features(pool.batch).double()
                u = torch.rand(config.num_samples, device=phi.device, generator=generator, dtype=torch.float64)
            log_w = phi @ potential.lam.double().to(phi.device)  # log P_λ/r = λ·φ
            if config.method == "snis":
                model = snis_moments(phi, log_w).cpu()
            else:
                bound = potential.log_ratio_bound()
                accept = u.log() < (log_w - bound)
                if not bool(accept.any()):
                    raise RuntimeError("rejection sampling accepted no sample: increase num_samples")
                model = phi[accept].mean(0).cpu()
        gap = data_moments - model
        history.append(float(gap.abs().max()))
        if history[-1] < config.tolerance:
            converged = True
            break
        lr = config.lr0 / step if config.lr_decay else config.lr0
        potential.lam += (lr * gap).to(potential.lam)
    return Training1Result(potential.lam.detach().clone(), data_moments, model, step, converged, history)


def lam_summary(result: Training1Result, names: list[str]) -> dict[str, float]:
    out = {f"lambda_{n}": float(v) for n, v in zip(names, result.lam)}
    out.update({f"moment_data_{n}": float(v) for n, v in zip(names, result.data_moments)})
    out.update({f"moment_model_{n}": float(v) for n, v in zip(names, result.model_moments)})
    out["moment_gap"] = result.history[-1] if result.history else math.nan
    return out
