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

from ..policies.base import StepInfo
from ..rewards.base import candidate_rewards, compute_reward, make_reward
from ..types import SequenceBatch
from .base import Algorithm, ERPOPoint, register_algorithm
from .erpo import erpo_loss


class MixtureRecorder:
    """Override hook: per token, z ~ (λ_model, λ_reward, λ_ref) picks p_θ^c, softmax(c·ΔR), or y*_t.

    Records log s(y_t) of the mixture (the proposal density) for every emitted token.
    """

    def __init__(self, reward, refs: SequenceBatch, vocab, max_len: int, weights: tuple[float, float, float],
                 sharpness: float = 1.0, reward_temperature: float = 1.0) -> None:
        self.reward, self.refs, self.vocab, self.max_len = reward, refs, vocab, max_len
        self.weights = weights
        self.c, self.tau_r = sharpness, reward_temperature
        self.log_s: list[Tensor] = []

    def component_log_probs(self, t: int, prefix: Tensor, log_probs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B, V] log-probabilities of the three components at step t."""
        dev = log_probs.device
        lam_model, lam_reward, _ = self.weights
        model = torch.log_softmax(self.c * log_probs, -1) if self.c != 1.0 else log_probs
        if lam_reward > 0:
            delta = candidate_rewards(self.reward, prefix, self.refs, self.vocab).to(dev)
            reward = torch.log_softmax(self.c * delta / self.tau_r, -1)
        else:
            reward = torch.full_like(log_probs, float("-inf"))
        ref = torch.full_like(log_probs, float("-inf"))
        if t < self.refs.tokens.shape[1]:
            inside = t < self.refs.lengths.to(dev)
            tok = torch.where(inside, self.refs.tokens[:, t].to(dev), torch.full_like(inside, self.vocab.eos,
                                                                                   dtype=torch.long))
        else:
            tok = torch.full((log_probs.shape[0],), self.vocab.eos, dtype=torch.long, device=dev)
        ref.scatter_(1, tok[:, None], 0.0)
        return model, reward, ref

    def mixture_log_probs(self, t: int, prefix: Tensor, log_probs: Tensor) -> Tensor:
        parts = self.component_log_probs(t, prefix, log_probs)
        logw = torch.log(torch.tensor(self.weights, dtype=log_probs.dtype, device=log_probs.device))
        return torch.logsumexp(torch.stack([w + p for w, p in zip(logw, parts)]), 0)

    def __call__(self, info: StepInfo) -> Tensor:
        mix = self.mixture_log_probs(info.t, info.prefix, info.log_probs)
        tok = torch.multinomial(mix.exp(), 1).squeeze(1)
        chosen = mix.gather(1, tok[:, None]).squeeze(1)
        forced = info.t >= self.max_len - 1  # the sampler emits EOS there whatever we return
        self.log_s.append(torch.where(info.finished | forced, torch.zeros_like(chosen), chosen))
        return tok


def mixture_log_prob(recorder: MixtureRecorder, batch: SequenceBatch, log_dists: Tensor) -> Tensor:
    """[B] log s(y) of whole sequences under the mixture proposal (teacher-forced)."""
    T = batch.tokens.shape[1]
    out = torch.zeros(batch.batch_size, dtype=torch.float64)
    for t in range(T):
        mix = recorder.mixture_log_probs(t, batch.tokens[:, :t], log_dists[:, t])
        lp = mix.gather(1, batch.tokens[:, t : t + 1]).squeeze(1).double()
        counted = batch.mask_t[:, t] & (t < recorder.max_len - 1)
        out += torch.where(counted, lp, torch.zeros_like(lp))
    return out


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
    erpo_point = ERPOPoint(reward="R", alpha=1.0, beta=0.0)

    @dataclass(frozen=True, kw_only=True)
    class Config:
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

    def __init__(self, policy, config=None, *, reward=None) -> None:
        super().__init__(policy, config)
        if not 0.0 < self.config.model_prob <= 1.0:
            raise ValueError("model_prob must be in (0, 1]")
        self.reward = self.resolve_reward(reward)
        guide = self.config.guide_reward
        self.guide = make_reward(guide, policy.vocab) if guide is not None else self.reward

    def recorder(self, refs: SequenceBatch) -> MixtureRecorder:
        p = self.config.model_prob
        return MixtureRecorder(self.guide, refs, self.policy.vocab, self.policy.max_len, (p, 1.0 - p, 0.0),
                               reward_temperature=self.config.reward_temperature)

    def collect(self, batch: SequenceBatch) -> SPGRollout:
        M = self.config.num_samples
        refs = batch.with_context(None).repeat_interleave(M)
        rec = self.recorder(refs)
        with torch.no_grad():
            if batch.context is not None:
                samples = self.policy.sample(M, batch.context, override=rec)
            else:
                samples = self.policy.sample(batch.batch_size * M, override=rec)
            log_s = torch.stack(rec.log_s, 1).sum(1)
            hyps = samples.batch.with_context(None)
            R = compute_reward(self.reward, hyps, refs)
            log_target = self.policy.sequence_log_prob(samples.batch) + R
        B = batch.batch_size
        return SPGRollout(samples.batch, log_target.view(B, M), log_s.view(B, M), M)

    def loss(self, rollout: SPGRollout) -> tuple[Tensor, dict[str, float]]:
        logp = self.policy.sequence_log_prob(rollout.samples).view(-1, rollout.num)
        return spg_loss(logp, rollout.log_target, rollout.log_proposal), {}
