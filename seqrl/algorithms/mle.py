"""Maximum likelihood: the ERPO point (R_δ, α → 0, β = 1) ([ERPO] Sec. 3.2, Eq. 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from ..types import SequenceBatch
from ..utils import masked_sum
from .base import Algorithm, DataConfig, ERPOPoint, Requirements, register_algorithm


def mle_loss(logp_t: Tensor, mask_t: Tensor, normalize: Literal["sequence", "token"] = "sequence") -> Tensor:
    """−(1/B) Σ_b log π(y*_b) ([ERPO] Eq. 5); ``"token"`` divides by the number of tokens instead.

    Args:
        logp_t: [B, T] log π(y*_t | y*_<t, x) of the reference tokens.
        mask_t: [B, T] True on real tokens.
    """
    if logp_t.dim() != 2 or logp_t.shape != mask_t.shape:
        raise ValueError(f"logp_t and mask_t must both be [B, T], got {tuple(logp_t.shape)} and {tuple(mask_t.shape)}")
    total = masked_sum(logp_t, mask_t).sum()
    denom = mask_t.sum() if normalize == "token" else torch.tensor(float(mask_t.shape[0]))
    return -total / denom.to(total.dtype)


@register_algorithm("mle")
class MLE(Algorithm):
    """Teacher-forced maximum likelihood on the training references."""

    requires = Requirements(from_scratch=True)
    erpo_point: ClassVar[ERPOPoint | None] = ERPOPoint(reward="delta", alpha=0.0, beta=1.0)

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        normalize: Literal["sequence", "token"] = "sequence"
        """Average the negative log-likelihood per sequence (nats/sequence) or per token."""

    config: Config

    def __init__(self, policy, config: Config | None = None) -> None:
        super().__init__(policy, config)
        self.policy_optimizer()

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """One Adam step on −log π(y*) of the minibatch (Eq. 5)."""
        assert batch is not None, "MLE learns from data: fit feeds it minibatches"
        batch = self.training_batch(batch)
        loss = mle_loss(self.policy.token_log_probs(batch), batch.mask_t, self.config.normalize)
        return {"nll": loss.detach(), **self.optimize(loss)}

    def training_batch(self, batch: SequenceBatch) -> SequenceBatch:
        """The references the step maximizes the likelihood of (data noising replaces symbols here)."""
        return batch
