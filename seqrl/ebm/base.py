"""Potentials (energy-based models): unnormalized log P(x) for any batch of sequences.

An EBM is identified with its potential P(x) = exp(-U(x)) ([DPG] Sec. 2.1); p = P / Z.
DPG, KL-control, GAMs and the ``potential`` reward all read the same objects.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from ..types import SequenceBatch, Vocab


class PotentialError(ValueError):
    """A potential that produced NaN/+inf, or that is -inf on a whole batch."""


@runtime_checkable
class Potential(Protocol):
    """log P(x) → [B]; -inf marks sequences outside the support."""

    def log_potential(self, batch: SequenceBatch) -> Tensor: ...


def checked_log_potential(potential: Potential, batch: SequenceBatch, *, require_support: bool = True) -> Tensor:
    """log P(x) → [B], raising :class:`PotentialError` on NaN, +inf, a wrong shape, or (when
    ``require_support``) a batch where every value is -inf (P = 0 on all of it: no importance
    weight can be formed and Z would be estimated as 0)."""
    values = potential.log_potential(batch)
    if values.shape != (batch.batch_size,):
        raise PotentialError(f"log_potential returned shape {tuple(values.shape)}, expected ({batch.batch_size},)")
    if bool(torch.isnan(values).any()) or bool((values == math.inf).any()):
        raise PotentialError("log_potential returned NaN or +inf; expected finite values or -inf")
    if require_support and bool((values == -math.inf).all()):
        raise PotentialError(
            f"the potential is -inf (P = 0) on all {batch.batch_size} sequences of the batch: "
            "it has no support where the proposal puts mass; check the potential, or sample more"
        )
    return values


class MotifProcessPotential:
    """Unnormalized p_true of the GAM motif task ([DPG] Sec. 4, A.3): white noise filtered by
    the motif. P(x) = 2^-n if |x| = n and m occurs in x, else 0."""

    def __init__(self, vocab: Vocab, motif: str, length: int) -> None:
        from ..rewards.builtin import motif_presence

        self.motif, self.length = motif, length
        self._motif_ids = torch.tensor(vocab.encode(list(motif), add_eos=False))
        self._presence = motif_presence

    def log_potential(self, batch: SequenceBatch) -> Tensor:
        present = self._presence(batch, self._motif_ids.to(batch.device))
        right_length = batch.lengths == self.length + 1
        value = torch.full((batch.batch_size,), -self.length * math.log(2.0), device=batch.device)
        return torch.where(present & right_length, value, torch.full_like(value, -math.inf))
