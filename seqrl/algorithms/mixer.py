"""MIXER ([ERPO] App. A; Ranzato et al., 2016): MLE on the first m reference tokens, REINFORCE
on the model's continuation, with m annealed from T down by Δ every k steps.

Loss per sequence: −Σ_{t<m} log π(y*_t | y*_<t) − A·Σ_{t≥m} log π(y_t | y_<t), where y_t = y*_t
for t < m, y_t ~ π beyond, and A = R(y_{1:T}) − R(y*_{1:m}) ([ERPO] C.2). With m ≥ |y*| it is MLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..proposals import reference_override, samples_per_reference
from ..rewards.base import compute_reward, prefixes_with_eos
from ..types import SequenceBatch
from .base import Algorithm, Requirements, RunContext, register_algorithm

__all__ = ["Mixer", "reference_override"]  # reference_override lives in seqrl.proposals


@dataclass(frozen=True)
class MixerRollout:
    batch: SequenceBatch
    m: int
    advantage: Tensor


@register_algorithm("mixer")
class Mixer(Algorithm):
    requires = Requirements(reward=True)

    @classmethod
    def bench_kwargs(cls, context: RunContext) -> dict[str, Any]:
        """Start from the whole target teacher-forced, hand Δ = 2 tokens to REINFORCE every epoch."""
        return {**super().bench_kwargs(context), "m_start": context.max_len, "delta": 2,
                "anneal_every": max(1, context.steps_per_epoch)}

    config: Config  # set by Algorithm.__init__

    @dataclass(frozen=True, kw_only=True)
    class Config:
        reward: str = "bleu"
        m_start: int | None = None
        """Initial number of teacher-forced tokens (default: max_len, i.e. pure MLE)."""
        delta: int = 2
        """Δ: tokens handed to REINFORCE at each annealing step."""
        anneal_every: int = 500
        """k: optimizer steps between annealing steps."""

    def __init__(self, policy, config=None, *, reward=None) -> None:
        super().__init__(policy, config)
        self.reward = self.resolve_reward(reward)
        self.m = self.config.m_start if self.config.m_start is not None else policy.max_len
        if self.m < 0 or self.config.delta < 0 or self.config.anneal_every < 1:
            raise ValueError("need m_start ≥ 0, delta ≥ 0 and anneal_every ≥ 1")

    def collect(self, batch: SequenceBatch | None) -> MixerRollout:
        assert batch is not None, "uses_data: fit feeds it training minibatches"
        refs = batch.with_context(None)
        m = self.m
        with torch.no_grad():
            hook = reference_override(refs, lambda info: torch.full_like(info.finished, info.t < m))
            samples = samples_per_reference(self.policy, batch, 1, override=hook)
            hyps = samples.batch.with_context(None)
            R = compute_reward(self.reward, hyps, refs)
            # R(y*_{1:m}) with R(ŷ) = R(ŷ + eos); R(∅) = 0 when m = 0.
            if m == 0:
                R_m = torch.zeros_like(R)
            else:
                prefixes = prefixes_with_eos(refs, self.policy.vocab.eos)
                width = refs.tokens.shape[1]
                k = torch.clamp(torch.full_like(refs.lengths, m), max=width) - 1
                rows = torch.arange(refs.batch_size, device=refs.device) * width + k
                R_m = compute_reward(self.reward, prefixes.index(rows), refs)
        return MixerRollout(samples.batch, m, R - R_m)

    def loss(self, rollout: MixerRollout) -> tuple[Tensor, dict[str, float]]:
        logp_t = self.policy.token_log_probs(rollout.batch)  # (B, T), 0 on padding
        steps = torch.arange(logp_t.shape[1], device=logp_t.device)[None]
        mle_part = torch.where(steps < rollout.m, logp_t, torch.zeros_like(logp_t)).sum(1)
        pg_part = torch.where(steps >= rollout.m, logp_t, torch.zeros_like(logp_t)).sum(1)
        loss = -(mle_part + rollout.advantage.detach() * pg_part).mean()
        return loss, {"m": float(rollout.m), "advantage": float(rollout.advantage.mean())}

    def on_step_end(self, step: int) -> None:
        if step % self.config.anneal_every == 0:
            self.m = max(0, self.m - self.config.delta)
