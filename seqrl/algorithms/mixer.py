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
from .base import Algorithm, DataConfig, Offer, Requirements, register_algorithm, resolve_reward

__all__ = ["Mixer", "reference_override"]  # reference_override lives in seqrl.proposals


@dataclass(frozen=True)
class MixerRollout:
    batch: SequenceBatch
    m: int
    advantage: Tensor


@register_algorithm("mixer")
class Mixer(Algorithm):
    """MIXER: MLE on the first m reference tokens, REINFORCE beyond; m falls by Δ every k steps."""

    requires = Requirements(reward=True)
    resumable = ("steps", "m")

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        reward: str = "bleu"
        m_start: int | None = None
        """Initial number of teacher-forced tokens (default: max_len, i.e. pure MLE)."""
        delta: int = 2
        """Δ: tokens handed to REINFORCE at each annealing step."""
        anneal_every: int = 500
        """k: optimizer steps between annealing steps (the builder sets one epoch when the run offers data)."""

        def check(self) -> None:
            super().check()
            self.at_least_zero("m_start", "delta")
            self.positive("anneal_every")

    config: Config

    @classmethod
    def defaults_for(cls, policy, offer: Offer, given: dict[str, Any]) -> dict[str, Any]:
        """From a random start: the whole target teacher-forced, Δ tokens handed to REINFORCE every epoch.
        Fine-tuning a trained policy within a known budget (MIXER's first phase, XENT, is that training): Ranzato et
        al.'s schedule s = T, T − Δ, …, down to 0 with T the longest training reference (EOS counted, so the first
        stage is MLE), its stages spread evenly over the budget; handing Δ tokens per epoch from ``max_len`` would
        leave a short fine-tuning all MLE (33 → 23 teacher-forced tokens in 5 epochs, above every reference of
        ``variant_translation``)."""
        if offer.train is None:
            return {}
        batch = given.get("batch_size", cls.Config.batch_size)
        if offer.from_scratch or (offer.steps is None and offer.epochs is None):
            return {"anneal_every": offer.steps_per_epoch(batch)}
        m_start = given.get("m_start") or int(offer.train.lengths.max())
        delta = given.get("delta", cls.Config.delta)
        stages = -(-m_start // delta) + 1 if delta else 1  # m = T, T − Δ, …, ≤ 0
        return {"m_start": m_start, "anneal_every": max(1, offer.budget(batch) // stages)}

    def __init__(self, policy, config: Config | None = None, *, reward=None) -> None:
        super().__init__(policy, config)
        self.reward = resolve_reward(reward, self.config.reward, policy.vocab)
        self.m = self.config.m_start if self.config.m_start is not None else policy.max_len
        self.policy_optimizer()

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """Teacher-force y*_{<m}, sample the rest, one step on the mixed loss, then anneal m every k steps."""
        assert batch is not None, "mixer learns from references: fit feeds it minibatches"
        loss, metrics = self.loss(self.collect(batch))
        metrics.update(self.optimize(loss))
        if self.steps % self.config.anneal_every == 0:
            self.m = max(0, self.m - self.config.delta)
        return metrics

    @torch.no_grad()
    def collect(self, batch: SequenceBatch) -> MixerRollout:
        """The mixed samples (y*_{<m}, then y ~ π) and their advantage A = R(y_{1:T}) − R(y*_{1:m}) ([ERPO] C.2)."""
        m, refs = self.m, batch.with_context(None)
        hook = reference_override(refs, lambda info: torch.full_like(info.finished, info.t < m))
        samples = samples_per_reference(self.policy, batch, 1, override=hook).batch
        R = compute_reward(self.reward, samples.with_context(None), refs)
        if m == 0:  # R(y*_{1:m}) with R(ŷ) = R(ŷ + eos); R(∅) = 0
            return MixerRollout(samples, m, R)
        prefixes = prefixes_with_eos(refs, self.policy.vocab.eos)
        width = refs.tokens.shape[1]
        k = torch.clamp(torch.full_like(refs.lengths, m), max=width) - 1
        rows = torch.arange(refs.batch_size, device=refs.device) * width + k
        return MixerRollout(samples, m, R - compute_reward(self.reward, prefixes.index(rows), refs))

    def loss(self, rollout: MixerRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """−Σ_{t<m} log π(y*_t) − A·Σ_{t≥m} log π(y_t), per sequence, averaged."""
        logp_t = self.policy.token_log_probs(rollout.batch)  # (B, T), 0 on padding
        steps = torch.arange(logp_t.shape[1], device=logp_t.device)[None]
        mle_part = torch.where(steps < rollout.m, logp_t, torch.zeros_like(logp_t)).sum(1)
        pg_part = torch.where(steps >= rollout.m, logp_t, torch.zeros_like(logp_t)).sum(1)
        loss = -(mle_part + rollout.advantage.detach() * pg_part).mean()
        return loss, {"m": float(rollout.m), "advantage": rollout.advantage.mean()}
