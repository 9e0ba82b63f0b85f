"""Softmax policy gradient ([ERPO] Sec. 3.4, Eq. 8; Ding & Soricut, 2017): the ERPO point
(R, α = 1, β = 0), whose E-step target is q(y) ∝ p_θ(y)·exp(R(y; y*)).

What is implemented: the M-step E_q[∇ log p_θ(y)] by importance sampling, with Ding &
Soricut's token-level reward-guided ("bang-bang") proposal: each token comes, with
probability ``model_prob``, from p_θ(· | y_<t) and otherwise from softmax(ΔR(· | y_<t, y*)/τ_r)
(the incremental reward of every candidate token; ``guide_reward`` may name a cheaper reward
for this proposal only). The proposal's exact probability s(y) is
recorded while sampling, and the M samples per reference are weighted by the
self-normalized w ∝ p_θ(y)·exp(R(y))/s(y).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..proposals import MixtureRecorder, mixture_log_prob, samples_per_reference
from ..rewards.base import compute_reward, make_reward
from ..types import SequenceBatch
from .base import Algorithm, DataConfig, ERPOPoint, Requirements, register_algorithm, resolve_reward
from .erpo import erpo_loss

__all__ = ["SPG", "spg_loss", "MixtureRecorder", "mixture_log_prob"]  # the last two live in seqrl.proposals


def spg_loss(logp: Tensor, log_target: Tensor, log_proposal: Tensor, normalize: bool = True) -> Tensor:
    """−(1/B) Σ_b Σ_i w_bi log p_θ(y_bi), w ∝ exp(log q̃ − log s) ([B, M]); self-normalized over i
    when ``normalize``, else the raw ratios (whose expectation is Z_q·E_q[∇ log p_θ])."""
    log_w = (log_target - log_proposal).detach()
    w = torch.softmax(log_w, -1) if normalize else log_w.exp()
    return erpo_loss(logp, w.to(logp.dtype))


@dataclass(frozen=True)
class SPGRollout:
    samples: SequenceBatch
    log_target: Tensor
    log_proposal: Tensor
    num: int


@register_algorithm("spg")
class SPG(Algorithm):
    """Softmax policy gradient: the M-step of q ∝ p_θ·e^R by importance sampling from a bang-bang proposal."""

    erpo_point = ERPOPoint(reward="R", alpha=1.0, beta=0.0)
    requires = Requirements(reward=True)

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        reward: str = "bleu"
        num_samples: int = 4
        """M proposal samples per reference."""
        model_prob: float = 0.5
        """Probability that a token is drawn from p_θ rather than from the reward ("bang-bang")."""
        reward_temperature: float = 0.1
        """τ_r of the reward-guided component softmax(ΔR/τ_r) (ΔR of BLEU is small per token)."""
        guide_reward: str | None = None
        """Reward whose ΔR guides the proposal (default: ``reward``). The importance weights use
        ``reward`` whatever guides the proposal, so a cheap guide (hamming) keeps q unchanged."""

        def check(self) -> None:
            super().check()
            self.positive("num_samples", "reward_temperature")
            if not 0.0 < self.model_prob <= 1.0:
                raise ValueError("model_prob must be in (0, 1]")

    config: Config

    def __init__(self, policy, config: Config | None = None, *, reward=None) -> None:
        super().__init__(policy, config)
        self.reward = resolve_reward(reward, self.config.reward, policy.vocab)
        guide = self.config.guide_reward
        self.guide = make_reward(guide, policy.vocab) if guide is not None else self.reward
        self.policy_optimizer()

    def recorder(self, refs: SequenceBatch) -> MixtureRecorder:
        p = self.config.model_prob
        return MixtureRecorder(self.guide, refs, self.policy.vocab, self.policy.max_len, (p, 1.0 - p, 0.0),
                               reward_temperature=self.config.reward_temperature)

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """M proposal samples per reference with their exact log s(y), weights ∝ p_θ·e^R/s, one M-step."""
        assert batch is not None, "spg learns from references: fit feeds it minibatches"
        loss, metrics = self.loss(self.collect(batch))
        return {**metrics, **self.optimize(loss)}

    @torch.no_grad()
    def collect(self, batch: SequenceBatch) -> SPGRollout:
        M, B = self.config.num_samples, batch.batch_size
        refs = batch.with_context(None).repeat_interleave(M)
        rec = self.recorder(refs)
        samples = samples_per_reference(self.policy, batch, M, override=rec).batch
        log_s = torch.stack(rec.log_s, 1).sum(1)
        R = compute_reward(self.reward, samples.with_context(None), refs)
        log_target = self.policy.sequence_log_prob(samples) + R
        return SPGRollout(samples, log_target.view(B, M), log_s.view(B, M), M)

    def loss(self, rollout: SPGRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        logp = self.policy.sequence_log_prob(rollout.samples).view(-1, rollout.num)
        return spg_loss(logp, rollout.log_target, rollout.log_proposal), {}
