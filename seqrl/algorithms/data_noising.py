"""Data noising ([ERPO] Sec. 3.5, Eq. 9; Xie et al., 2017): MLE on references whose symbols are
each replaced, with probability γ, by a draw from the unigram distribution u of the training
targets. ERPO point: (R_δ^unigram, α → 0, β = 1); the target is the noised data distribution
q(y | y*) = Π_t [(1 − γ)·1(y_t = y*_t) + γ·u(y_t)] over sequences of |y*|'s length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..proposals import unigram_distribution, unigram_noise
from ..types import SequenceBatch
from .base import ERPOPoint, Offer, register_algorithm
from .mle import MLE

__all__ = ["DataNoising", "unigram_distribution", "unigram_noise"]  # the helpers live in seqrl.proposals


@register_algorithm("data_noising")
class DataNoising(MLE):
    """MLE on unigram-noised references (Eq. 9)."""

    erpo_point = ERPOPoint(reward="delta_unigram", alpha=0.0, beta=1.0)
    resumable = ("steps", "_counts")

    @dataclass(frozen=True, kw_only=True)
    class Config(MLE.Config):
        gamma: float = 0.1
        """Replacement probability γ of Eq. 9."""

        def check(self) -> None:
            super().check()
            if not 0.0 <= self.gamma <= 1.0:
                raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")

    config: Config

    @classmethod
    def defaults_for(cls, policy, offer: Offer, given: dict[str, Any]) -> dict[str, Any]:
        """u: the unigram distribution of the run's training targets (fixed for the run)."""
        return {} if offer.train is None else {"unigram": unigram_distribution(offer.train, policy.vocab)}

    def __init__(self, policy, config: Config | None = None, *, unigram: Tensor | None = None) -> None:
        super().__init__(policy, config)
        self.unigram = unigram
        self._counts = torch.zeros(len(policy.vocab), dtype=torch.float64)

    def training_batch(self, batch: SequenceBatch) -> SequenceBatch:
        """The batch with each symbol replaced by a draw of u with probability γ (u: the run's unigram, or the
        running estimate from the batches seen so far when none was given)."""
        unigram = self.unigram
        if unigram is None:
            self._counts += unigram_distribution(batch, self.policy.vocab) * batch.mask_t.sum().item()
            unigram = self._counts / self._counts.sum()
        return unigram_noise(batch, unigram, self.config.gamma, self.policy.vocab.eos)
