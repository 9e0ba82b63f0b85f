"""Constraint EBMs of Generation with Distributional Control (GDC; Khalifa et al., 2021, as in [GDC++] Sec. 4.1).

P(x) = a(x)·exp(Σ_i λ_i φ_i(x)) ([GDC++] Eq. 16), λ fitted so that E_p φ_i = μ̄_i: the distribution closest to a
in KL(p‖a) under those moments. A pointwise constraint (μ̄ = 1: φ(x) = 1 for every x of p) is the limit λ → ∞,
written exactly as the filter P = a·1[φ(x) = 1]; μ̄ = 0 likewise gives a·1[φ(x) = 0]. Distributional constraints
(0 < μ̄ < 1) get a finite λ, fitted by the project's Training-1 solver (:func:`~seqrl.ebm.training1.fit_lambda`)
with SNIS moments from samples of a, restricted to the pointwise support; hybrid sets mix both kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..policies.base import AutoregressivePolicy
from ..types import SequenceBatch
from .base import PotentialError, base_log_prob
from .sampling import draw
from .training1 import Training1Config, Training1Result, fit_lambda, log_support


class InfeasibleConstraintError(ValueError):
    """Target moments that no λ reaches: p_λ cannot satisfy them on the support a gives."""


@dataclass(frozen=True)
class Constraint:
    """E_p φ(x) = μ̄ ([GDC++] Sec. 4.1): ``feature`` maps a batch to [B] values in [0, 1]; μ̄ = ``moment`` ∈ [0, 1].

    μ̄ ∈ {0, 1} is pointwise (φ(x) = μ̄ for every x of p); 0 < μ̄ < 1 is distributional.
    """

    name: str
    feature: Callable[[SequenceBatch], Tensor]
    moment: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a constraint needs a non-empty name, got {self.name!r}")
        if not callable(self.feature):
            raise TypeError(f"constraint {self.name!r}: feature must be a function batch → [B], got "
                            f"{type(self.feature).__name__}")
        moment = float(self.moment)
        if not (0.0 <= moment <= 1.0):  # also rejects NaN
            raise ValueError(f"constraint {self.name!r}: moment μ̄ must lie in [0, 1], got {self.moment}")
        object.__setattr__(self, "moment", moment)

    @property
    def pointwise(self) -> bool:
        """μ̄ ∈ {0, 1}: the constraint filters sequences instead of reweighting them."""
        return self.moment in (0.0, 1.0)

    def values(self, batch: SequenceBatch) -> Tensor:
        """[B] φ(x), checked: a tensor of that shape, finite, within [0, 1]."""
        values = self.feature(batch)
        if not isinstance(values, Tensor) or values.shape != (batch.batch_size,):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"constraint {self.name!r}: feature returned {shape}, expected a "
                             f"({batch.batch_size},) tensor")
        values = values.double()
        if bool(((values < 0) | (values > 1) | values.isnan()).any()):
            raise ValueError(f"constraint {self.name!r}: feature values must lie in [0, 1] (a moment μ̄ ∈ [0, 1] "
                             f"constrains them), got values in [{float(values.min())}, {float(values.max())}]")
        return values


class ConstraintPotential(nn.Module):
    """log P(x) = log a(x) + Σ_distributional λ_i φ_i(x) + Σ_pointwise log 1[φ_j(x) = μ̄_j] ([GDC++] Eq. 16).

    A :class:`~seqrl.ebm.base.Potential` (−inf outside the pointwise support) and a Training-1
    :class:`~seqrl.ebm.training1.MomentPotential`. ``lam`` holds one λ per distributional constraint, in
    the order they are given (zeros until :meth:`fit`). :meth:`log_ratio_to_base` serves proposals equal to a.

    Args:
        base: a(x), the pretrained policy (frozen here).
        constraints: at least one :class:`Constraint`, names unique.
        lam: initial λ, shape (number of distributional constraints,).
    """

    lam: Tensor  # a buffer (register_buffer below), declared so that it types as a tensor

    def __init__(self, base: AutoregressivePolicy, constraints: Sequence[Constraint],
                 lam: Tensor | Sequence[float] | None = None) -> None:
        super().__init__()
        constraints = tuple(constraints)
        if not constraints:
            raise ValueError("ConstraintPotential needs at least one Constraint")
        for c in constraints:
            if not isinstance(c, Constraint):
                raise TypeError(f"constraints must be Constraint objects, got {type(c).__name__}")
        names = [c.name for c in constraints]
        if len(set(names)) != len(names):
            raise ValueError(f"constraint names must be unique, got {names}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.constraints = constraints
        self.pointwise = tuple(c for c in constraints if c.pointwise)
        self.distributional = tuple(c for c in constraints if not c.pointwise)
        k = len(self.distributional)
        lam = torch.zeros(k) if lam is None else torch.as_tensor(lam, dtype=torch.float32)
        if lam.shape != (k,):
            raise ValueError(f"λ must have shape ({k},), one per distributional constraint "
                             f"{[c.name for c in self.distributional]}, got {tuple(lam.shape)}")
        self.register_buffer("lam", lam.clone())

    @property
    def names(self) -> list[str]:
        """Names of the distributional constraints, in the order of ``lam``."""
        return [c.name for c in self.distributional]

    @property
    def target_moments(self) -> Tensor:
        """[K] float64 μ̄ of the distributional constraints."""
        return torch.tensor([c.moment for c in self.distributional], dtype=torch.float64)

    def features(self, batch: SequenceBatch) -> Tensor:
        """[B, K] φ(x) of the distributional constraints."""
        if not self.distributional:
            return torch.zeros(batch.batch_size, 0, dtype=torch.float64, device=batch.device)
        return torch.stack([c.values(batch) for c in self.distributional], 1)

    def log_support(self, batch: SequenceBatch) -> Tensor:
        """[B] float64 log Π_pointwise 1[φ_j(x) = μ̄_j]: 0 where every pointwise constraint holds, else −inf."""
        inside = torch.ones(batch.batch_size, dtype=torch.bool, device=batch.device)
        for c in self.pointwise:
            inside = inside & (c.values(batch) == c.moment)
        zero = torch.zeros(batch.batch_size, dtype=torch.float64, device=batch.device)
        return torch.where(inside, zero, torch.full_like(zero, -math.inf))

    def log_ratio_to_base(self, batch: SequenceBatch) -> Tensor:
        """[B] log P(x) − log a(x) = λ·φ(x) + log 1[x ∈ support] (float32)."""
        return (self.features(batch) @ self.lam.to(batch.device).double() + self.log_support(batch)).float()

    @torch.no_grad()
    def log_potential(self, batch: SequenceBatch) -> Tensor:
        """[B] log a(x) + λ·φ(x) + log 1[x ∈ support]."""
        log_a = base_log_prob(self.base, batch)
        return log_a + self.log_ratio_to_base(batch).to(log_a)

    def log_ratio_bound(self) -> float:
        """Σ_i max(λ_i, 0) ≥ max_x λ·φ(x), since φ ∈ [0, 1]: a rejection-sampling bound log β for proposal a."""
        return float(self.lam.clamp(min=0).sum())

    def fit(self, config: Training1Config | None = None, *, space: SequenceBatch | None = None,
            max_gap: float = 1e-3) -> Training1Result:
        """λ with E_{p_λ} φ_i = μ̄_i ([GDC++] Sec. 4.1) by :func:`~seqrl.ebm.training1.fit_lambda`; sets ``lam``.

        Default: SNIS moments on one pool of 10⁴ samples of a (Newton converges on that pool); with ``space``
        (an enumerated space) and no config, exact moments. Samples outside the pointwise support weigh 0.

        Raises:
            PotentialError: no sample of a (no sequence of ``space``) satisfies the pointwise constraints.
            InfeasibleConstraintError: the fitted moments stay more than ``max_gap`` from μ̄ (a moment outside
                the range the feature takes on the support, or constraints that contradict each other).
        """
        if config is None:
            config = Training1Config(method="exact") if space is not None else Training1Config(resample_every=None)
        if not self.distributional:
            self._check_support(config, space)
            empty = torch.zeros(0, dtype=torch.float64)
            return Training1Result(self.lam.detach().clone(), empty, empty, 0, True, [])
        result = fit_lambda(self, None, config, space=space, moments=self.target_moments)
        gap = (result.model_moments - result.data_moments).abs()
        if not bool((gap <= max_gap).all()):
            detail = ", ".join(f"{n}: target {float(t):.4g}, reached {float(m):.4g}" for n, t, m
                               in zip(self.names, result.data_moments, result.model_moments))
            raise InfeasibleConstraintError(
                f"the constraint moments are not reachable on the support of a ({detail}): a target outside the "
                "range its feature takes there, or constraints that contradict each other"
            )
        return result

    def _check_support(self, config: Training1Config, space: SequenceBatch | None) -> None:
        """Raise :class:`PotentialError` when the pointwise constraints hold nowhere a puts mass (P = 0 everywhere)."""
        if space is not None:
            batch = space
        else:
            generator = torch.Generator(device=self.base.device).manual_seed(config.seed)
            batch = draw(self.base, config.num_samples, lambda b, lq: torch.zeros_like(lq), generator).batch
        if bool((log_support(self, batch) == -math.inf).all()):
            where = "sequence of the space" if space is not None else f"of {batch.batch_size} samples of a"
            raise PotentialError(f"no {where} satisfies the pointwise constraints "
                                 f"{[c.name for c in self.pointwise]}: P = a·1[φ = μ̄] is 0 everywhere")
