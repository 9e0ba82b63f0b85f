"""REINFORCE / policy gradient ([ERPO] App. A, Eq. 10–11; [GDC++] Eq. 1): ∇ E_π R = E_π[(R − b) ∇ log π].

ERPO point: (R = log R_PG, α = 1, β = 0) with the normalizer Z_θ omitted ([ERPO] Eq. 12).
Baselines, none of which biases the estimate: ``none``; ``mean``, the leave-one-out mean of
the other samples' rewards (independent of the sample it centres); ``self_critical``, the
reward of the greedy decode for the same source (Rennie et al., 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..distributed import all_reduce_sum
from ..proposals import samples_per_reference
from ..rewards.base import compute_reward
from ..types import SequenceBatch
from .base import Algorithm, DataConfig, ERPOPoint, Requirements, register_algorithm, resolve_reward


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
    with group = 1 the mean over the rest of the batch, the global batch when several processes share it (each
    rank's rows are its own; a group > 1 lies on one rank)."""
    if group > 1:
        r = reward.view(-1, group)
        return ((r.sum(1, keepdim=True) - r) / (group - 1)).flatten()
    totals = all_reduce_sum(torch.stack([reward.sum(), torch.tensor(float(reward.numel()), device=reward.device,
                                                                    dtype=reward.dtype)]))
    n = int(round(float(totals[1])))
    if n < 2:
        return torch.zeros_like(reward)
    return (totals[0] - reward) / (n - 1)


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
    learns_from_prompts = True  # references only feed the reward: prompts alone serve a reward that needs none

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        reward: str = "bleu"
        baseline: Literal["none", "mean", "self_critical"] = "mean"
        num_samples: int = 1
        """Samples per source (the leave-one-out mean uses the source's other samples when > 1)."""

        def check(self) -> None:
            super().check()
            self.positive("num_samples")

    config: Config

    def __init__(self, policy, config: Config | None = None, *, reward=None) -> None:
        super().__init__(policy, config)
        self.reward = resolve_reward(reward, self.config.reward, policy.vocab)
        self.policy_optimizer()

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """Sample y ~ π per reference, score R(y; y*), one step on −(R − b)·log π(y) ([ERPO] Eq. 10–11)."""
        assert batch is not None, "reinforce learns from references: fit feeds it minibatches"
        loss, metrics = self.loss(self.collect(batch))
        return {**metrics, **self.optimize(loss)}

    @torch.no_grad()
    def collect(self, batch: SequenceBatch) -> PGRollout:
        """``num_samples`` y ~ π per reference, their rewards and the baseline."""
        num = self.config.num_samples
        samples = samples_per_reference(self.policy, batch, num).batch
        refs = batch.with_context(None).repeat_interleave(num).to(samples.device) \
            if getattr(self.reward, "needs_reference", True) else None
        reward = compute_reward(self.reward, samples.with_context(None), refs)
        baseline = None
        if self.config.baseline == "mean":
            baseline = leave_one_out_mean(reward, num)
        elif self.config.baseline == "self_critical":
            greedy = samples_per_reference(self.policy, batch, num, mode="greedy").batch
            baseline = compute_reward(self.reward, greedy.with_context(None), refs)
        return PGRollout(samples, reward, baseline)

    def loss(self, rollout: PGRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        loss, advantage = reinforce_loss(self.policy.sequence_log_prob(rollout.batch), rollout.reward,
                                         rollout.baseline)
        return loss, {"reward": rollout.reward.mean(), "advantage_abs": advantage.abs().mean()}
