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
from .base import ERPOPoint, RunContext, register_algorithm
from .mle import MLE

__all__ = ["DataNoising", "unigram_distribution", "unigram_noise"]  # the helpers live in seqrl.proposals


@register_algorithm("data_noising")
class DataNoising(MLE):
    erpo_point = ERPOPoint(reward="delta_unigram", alpha=0.0, beta=1.0)

    @classmethod
    def bench_kwargs(cls, context: RunContext) -> dict[str, Any]:
        """u: the unigram distribution of the training targets (the run's own, fixed)."""
        if context.train is None:
            raise ValueError("data_noising needs the training data for its unigram distribution")
        return {**super().bench_kwargs(context), "unigram": unigram_distribution(context.train, context.vocab)}

    config: Config  # set by Algorithm.__init__

    @dataclass(frozen=True, kw_only=True)
    class Config(MLE.Config):
        gamma: float = 0.1
        """Replacement probability γ of Eq. 9."""

    def __init__(self, policy, config=None, *, unigram: Tensor | None = None) -> None:
        super().__init__(policy, config)
        if not 0.0 <= self.config.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.config.gamma}")
        self.unigram = unigram
        self._counts = torch.zeros(len(policy.vocab), dtype=torch.float64)

    def collect(self, batch: SequenceBatch | None) -> SequenceBatch:
        assert batch is not None, "uses_data: fit feeds it training minibatches"
        unigram = self.unigram
        if unigram is None:  # running estimate from the training batches seen so far
            self._counts += unigram_distribution(batch, self.policy.vocab) * batch.mask_t.sum().item()
            unigram = self._counts / self._counts.sum()
        return unigram_noise(batch, unigram, self.config.gamma, self.policy.vocab.eos)
