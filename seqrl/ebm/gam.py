"""Global Autoregressive Models ([DPG] Eq. 2): P_λ(x) = r(x)·exp(λ·φ(x))."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..policies.base import AutoregressivePolicy
from ..types import SequenceBatch
from .base import base_log_prob
from .features import MotifFeatures


class GAMPotential(nn.Module):
    """log P_λ(x) = log r(x) + λ·φ(x), with r a (frozen) policy and φ the features.

    Usable anywhere a potential is: as DPG's target, as a reward (``potential`` reward),
    or through :meth:`log_ratio_to_base`, which proposals equal to r use for importance
    weights and rejection sampling without evaluating r twice.
    """

    lam: Tensor  # a buffer (register_buffer below), declared so that it types as a tensor

    def __init__(self, base: AutoregressivePolicy, features: MotifFeatures, lam: Tensor | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.features = features
        lam = torch.zeros(features.dim) if lam is None else torch.as_tensor(lam, dtype=torch.float32)
        if lam.shape != (features.dim,):
            raise ValueError(
                f"λ must have shape ({features.dim},) for features {features.names}, got {tuple(lam.shape)}"
            )
        self.register_buffer("lam", lam.clone())

    def log_ratio_to_base(self, batch: SequenceBatch) -> Tensor:
        """[B] log P_λ(x) − log r(x) = λ·φ(x)."""
        return self.features(batch) @ self.lam.to(batch.device)

    @torch.no_grad()
    def log_potential(self, batch: SequenceBatch) -> Tensor:
        """[B] log r(x) + λ·φ(x)."""
        return base_log_prob(self.base, batch) + self.log_ratio_to_base(batch)

    def log_ratio_bound(self) -> float:
        """max_x λ·φ(x): the rejection-sampling bound log β for proposal r ([DPG] A.2, A.4)."""
        return self.features.max_dot(self.lam, self.base.max_len - 1)
