"""Data noising ([ERPO] Sec. 3.5, Eq. 9; Xie et al., 2017): MLE on references whose symbols are
each replaced, with probability γ, by a draw from the unigram distribution u of the training
targets. ERPO point: (R_δ^unigram, α → 0, β = 1); the target is the noised data distribution
q(y | y*) = Π_t [(1 − γ)·1(y_t = y*_t) + γ·u(y_t)] over sequences of |y*|'s length."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..types import SequenceBatch, Vocab
from .base import ERPOPoint, register_algorithm
from .mle import MLE


def unigram_distribution(data: SequenceBatch, vocab: Vocab) -> Tensor:
    """[V] frequencies of the symbols (not EOS/PAD/BOS) in ``data``."""
    tokens = data.tokens[data.mask_t & (data.tokens != vocab.eos)]
    counts = torch.bincount(tokens.cpu(), minlength=len(vocab)).double()
    if counts.sum() == 0:
        raise ValueError("empty data: no symbols to estimate a unigram distribution from")
    return counts / counts.sum()


def unigram_noise(batch: SequenceBatch, unigram: Tensor, gamma: float, eos: int,
                  generator: torch.Generator | None = None) -> SequenceBatch:
    """Replace each symbol (not the EOS) with prob γ by a draw of u."""
    B, T = batch.tokens.shape
    dev = batch.device
    flip = torch.rand(B, T, generator=generator).to(dev) < gamma
    draws = torch.multinomial(unigram.float().cpu(), B * T, replacement=True, generator=generator).view(B, T).to(dev)
    symbol = batch.mask_t & (batch.tokens != eos)
    return SequenceBatch(torch.where(flip & symbol, draws, batch.tokens), batch.lengths, batch.context)


@register_algorithm("data_noising")
class DataNoising(MLE):
    erpo_point = ERPOPoint(reward="delta_unigram", alpha=0.0, beta=1.0)

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

    def collect(self, batch: SequenceBatch) -> SequenceBatch:
        unigram = self.unigram
        if unigram is None:  # running estimate from the training batches seen so far
            self._counts += unigram_distribution(batch, self.policy.vocab) * batch.mask_t.sum().item()
            unigram = self._counts / self._counts.sum()
        return unigram_noise(batch, unigram, self.config.gamma, self.policy.vocab.eos)
