"""REINFORCE / policy gradient ([ERPO] App. A, Eq. 10–11; [GDC++] Eq. 1): ∇ E_π R = E_π[(R − b) ∇ log π].

ERPO point: (R = log R_PG, α = 1, β = 0) with the normalizer Z_θ omitted ([ERPO] Eq. 12).
Baselines, none of which biases the estimate: ``none``; ``mean``, the leave-one-out mean of
the other samples' rewards (independent of the sample it centres); ``self_critical``, the
reward of the greedy decode for the same source (Rennie et al., 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..proposals import samples_per_reference
from ..rewards.base import compute_reward
from ..types import SequenceBatch
from .base import Algorithm, ERPOPoint, Requirements, RunContext, register_algorithm


def reinforce_loss(logp: Tensor, reward: Tensor, baseline: Tensor | None = None,
                   reduction: Literal["mean", "none"] = "mean") -> tuple[Tensor, Tensor]:
    """Surrogate −(1/B) Σ_b (R_b − b_b) log π(y_b); returns (loss, advantages).

    Args:
        logp: [B] log π(y_b | x_b), differentiable. reward, baseline: [B], no gradient.
    Assumes: y_b ~ π(· | x_b), and b_b independent of y_b, or the gradient is biased.
    """
    if logp.dim() != 1 or logp.shape != reward.shape:
        raise ValueError(f"logp and reward must both be [B], got {tuple(logp.shape)}, {tuple(reward.shape)}")
    advantage = (reward - (baseline if baseline is not None else 0.0)).detach()
    per_sample = -(advantage * logp)
    return (per_sample if reduction == "none" else per_sample.mean()), advantage


def leave_one_out_mean(reward: Tensor, group: int) -> Tensor:
    """[B] mean of the other rewards in each group of ``group`` consecutive samples (B = G·group);
    with group = 1 the mean over the rest of the batch."""
    if group > 1:
        r = reward.view(-1, group)
        return ((r.sum(1, keepdim=True) - r) / (group - 1)).flatten()
    n = reward.numel()
    if n < 2:
        return torch.zeros_like(reward)
    return (reward.sum() - reward) / (n - 1)


@dataclass(frozen=True)
class PGRollout:
    batch: SequenceBatch
    reward: Tensor
    baseline: Tensor | None


@register_algorithm("reinforce")
class Reinforce(Algorithm):
    """Vanilla policy gradient on samples of π with a chosen baseline."""

    erpo_point = ERPOPoint(reward="log R", alpha=1.0, beta=0.0)
    requires = Requirements(reward=True)

    @classmethod
    def bench_kwargs(cls, context: RunContext) -> dict[str, Any]:
        """The self-critical baseline (greedy decode's reward): one sample per source suffices."""
        return {**super().bench_kwargs(context), "baseline": "self_critical"}

    config: Config  # set by Algorithm.__init__

    @dataclass(frozen=True, kw_only=True)
    class Config:
        reward: str = "bleu"
        baseline: Literal["none", "mean", "self_critical"] = "mean"
        num_samples: int = 1
        """Samples per source (the leave-one-out mean uses the source's other samples when > 1)."""

    def __init__(self, policy, config=None, *, reward=None) -> None:
        super().__init__(policy, config)
        self.reward = self.resolve_reward(reward)

    def collect(self, batch: SequenceBatch | None) -> PGRollout:
        assert batch is not None, "uses_data: fit feeds it training minibatches"
        num = self.config.num_samples
        with torch.no_grad():
            samples = samples_per_reference(self.policy, batch, num)
            refs = batch.with_context(None).repeat_interleave(num).to(samples.batch.device) \
                if getattr(self.reward, "needs_reference", True) else None
            reward = compute_reward(self.reward, samples.batch.with_context(None), refs)
            baseline = None
            if self.config.baseline == "mean":
                baseline = leave_one_out_mean(reward, num)
            elif self.config.baseline == "self_critical":
                greedy = samples_per_reference(self.policy, batch, num, mode="greedy")
                baseline = compute_reward(self.reward, greedy.batch.with_context(None), refs)
        return PGRollout(samples.batch, reward, baseline)

    def loss(self, rollout: PGRollout) -> tuple[Tensor, dict[str, float]]:
        logp = self.policy.sequence_log_prob(rollout.batch)
        loss, adv = reinforce_loss(logp, rollout.reward, rollout.baseline)
        return loss, {"reward": float(rollout.reward.mean()), "advantage_abs": float(adv.abs().mean())}
