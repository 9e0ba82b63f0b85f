"""Entropy-regularized policy optimization ([ERPO] Sec. 3.1).

    L(q, θ) = E_q[R(y|y*)] − α KL(q ‖ p_θ) + β H(q)                      (Eq. 1)
    E-step: q(y) ∝ exp{(α log p_θ(y) + R(y|y*)) / (α + β)}               (Eq. 2)
    M-step: θ ← argmax_θ E_q[log p_θ(y)]
    token level: q(y_t) ∝ exp{(α log p_θ(y_t|y_<t) + ΔR(y_t|y_<t, y*)) / (α + β)}   (Eq. 4)

MLE is (R_δ, α → 0, β = 1); RAML is (R, α → 0, β = τ); SPG is (R, α = 1, β = 0). The M-step
here is one importance-weighted log-likelihood over M candidates per reference: the E-step
weights are normalized over the candidates, corrected by the proposal that drew them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..rewards.base import compute_reward
from ..types import SequenceBatch, Vocab
from .base import Algorithm, ERPOPoint, register_algorithm


def _check_point(alpha: float, beta: float) -> None:
    if alpha < 0 or beta < 0 or alpha + beta <= 0:
        raise ValueError(f"ERPO needs α ≥ 0, β ≥ 0 and α + β > 0, got α={alpha}, β={beta}")


def erpo_e_step(log_p: Tensor, reward: Tensor, alpha: float, beta: float) -> Tensor:
    """log q over an enumerated set of sequences: log softmax((α log p + R)/(α + β)) (Eq. 2).

    ``alpha = 0`` is the limit α → 0; R may hold -inf (R_δ of Eq. 6)."""
    _check_point(alpha, beta)
    score = (alpha * log_p if alpha else torch.zeros_like(log_p)) + reward
    return torch.log_softmax(score / (alpha + beta), dim=-1)


def erpo_token_e_step(log_p_t: Tensor, delta_r_t: Tensor, alpha: float, beta: float) -> Tensor:
    """[..., V] token-level q(· | y_<t): log softmax((α log p_θ + ΔR)/(α + β)) over V (Eq. 4)."""
    _check_point(alpha, beta)
    if log_p_t.shape != delta_r_t.shape:
        raise ValueError(f"log_p_t {tuple(log_p_t.shape)} and delta_r_t {tuple(delta_r_t.shape)} differ")
    score = (alpha * log_p_t if alpha else torch.zeros_like(log_p_t)) + delta_r_t
    score = score.masked_fill(log_p_t == -math.inf, -math.inf)  # ids the policy cannot emit stay impossible
    return torch.log_softmax(score / (alpha + beta), dim=-1)


def erpo_weights(log_p: Tensor, reward: Tensor, alpha: float, beta: float,
                 log_proposal: Tensor | None = None) -> Tensor:
    """[B, M] self-normalized E-step weights of M candidates per reference (no gradient).

    w_i ∝ exp{(α log p_θ(y_i) + R(y_i))/(α + β)} / s(y_i), with s the (unnormalized) proposal
    that drew y_i; ``log_proposal=None`` treats the candidates as drawn uniformly.
    """
    if log_p.dim() != 2 or log_p.shape != reward.shape:
        raise ValueError(f"log_p and reward must both be [B, M], got {tuple(log_p.shape)}, {tuple(reward.shape)}")
    log_q = erpo_e_step(log_p.detach(), reward, alpha, beta)
    if log_proposal is not None:
        log_q = log_q - log_proposal
    return torch.softmax(log_q, dim=-1).detach()


def erpo_loss(logp: Tensor, weights: Tensor) -> Tensor:
    """M-step surrogate −(1/B) Σ_b Σ_i w_bi log p_θ(y_bi) for [B, M] log-probs and weights."""
    if logp.shape != weights.shape or logp.dim() != 2:
        raise ValueError(f"logp and weights must both be [B, M], got {tuple(logp.shape)}, {tuple(weights.shape)}")
    terms = torch.where(weights > 0, weights * logp, torch.zeros_like(logp))
    return -terms.sum(1).mean()


# --- payoff proposals ([VAML/ERAC] App. B.1) ---------------------------------------------
def ngram_replace(refs: SequenceBatch, vocab: Vocab, num: int, max_n: int = 4,
                  generator: torch.Generator | None = None) -> SequenceBatch:
    """``num`` perturbations per reference: an n-gram (n uniform in 1…max_n, start uniform)
    replaced by uniformly random symbols (Ma et al., 2017). Lengths are unchanged."""
    B, T = refs.tokens.shape
    dev = refs.device
    rep = refs.with_context(None).repeat_interleave(num)
    tokens, lengths = rep.tokens.clone(), rep.lengths
    content = (lengths - 1).clamp(min=0)  # symbols before EOS
    g = generator
    n = torch.randint(1, max_n + 1, (B * num,), generator=g).to(dev)
    n = torch.minimum(n, content)
    start = (torch.rand(B * num, generator=g).to(dev) * (content - n + 1).float()).long()
    symbols = torch.tensor(vocab.symbol_ids, device=dev)
    draws = symbols[torch.randint(len(symbols), (B * num, T), generator=g).to(dev)]
    pos = torch.arange(T, device=dev)[None]
    replace = (pos >= start[:, None]) & (pos < (start + n)[:, None])
    return SequenceBatch(torch.where(replace, draws, tokens), lengths)


def hamming_proposal(refs: SequenceBatch, vocab: Vocab, num: int, tau: float,
                     generator: torch.Generator | None = None) -> tuple[SequenceBatch, Tensor]:
    """Exact samples of s(y) ∝ exp(−d_H(y, y*)/τ) over sequences of |y*|'s length (Norouzi
    et al., 2016): draw the distance e with P(e) ∝ C(L, e)(S−1)^e e^{−e/τ}, then substitute e
    random positions by different symbols. Returns the samples and log s̃(y) = −d/τ."""
    B, T = refs.tokens.shape
    dev = refs.device
    S = len(vocab.symbol_ids)
    rep = refs.with_context(None).repeat_interleave(num)
    tokens, lengths = rep.tokens.clone(), rep.lengths
    L = (lengths - 1).clamp(min=0)  # substitutable positions (EOS stays)
    e_grid = torch.arange(T, device=dev, dtype=torch.float64)[None]  # (1, T)
    Ld = L.double()[:, None]
    log_binom = torch.lgamma(Ld + 1) - torch.lgamma(e_grid + 1) - torch.lgamma((Ld - e_grid).clamp(min=0) + 1)
    choices = e_grid * math.log(S - 1) if S > 1 else torch.where(e_grid == 0, 0.0, -math.inf)
    logits = log_binom + choices - e_grid / tau
    logits = torch.where(e_grid <= Ld, logits, torch.full_like(logits, -math.inf))
    e = torch.multinomial(torch.softmax(logits, 1).float().cpu(), 1, generator=generator).squeeze(1).to(dev)
    # Choose e distinct positions among the first L: rank random keys, keep the e smallest.
    keys = torch.rand(B * num, T, generator=generator).to(dev)
    pos = torch.arange(T, device=dev)[None]
    keys = torch.where(pos < L[:, None], keys, torch.full_like(keys, 2.0))
    rank = keys.argsort(1).argsort(1)
    chosen = rank < e[:, None]
    symbols = torch.tensor(vocab.symbol_ids, device=dev)
    index = torch.full((len(vocab),), -1, dtype=torch.long, device=dev)
    index[symbols] = torch.arange(S, device=dev)
    shift = torch.randint(1, max(S, 2), (B * num, T), generator=generator).to(dev)  # never the same symbol
    new = symbols[(index[tokens].clamp(min=0) + shift) % S]
    tokens = torch.where(chosen, new, tokens)
    return SequenceBatch(tokens, lengths), -e.double() / tau


# --- the algorithm ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ERPORollout:
    candidates: SequenceBatch
    """[B·M] candidates, reference first in each group of M."""
    weights: Tensor
    """[B, M] E-step weights."""
    num: int


class _ERPOBase(Algorithm):
    """Sequence-level ERPO with a payoff proposal: M−1 perturbations of y* plus y* itself."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        reward: str = "bleu"
        """Registered reward R (any, including a user's)."""
        alpha: float = 0.0
        """KL weight α (0 stands for α → 0)."""
        beta: float = 0.4
        """Entropy weight β; for RAML the temperature τ ([ERPO] C.2: τ = 0.4)."""
        num_samples: int = 10
        """M candidates per reference, y* included ([ERPO] C.2: 10)."""
        proposal: Literal["ngram", "hamming", "model"] = "ngram"
        """n-gram replacement (treated as uniform, Ma et al.), exact hamming sampling
        (corrected by its density), or the model itself (corrected by p_θ)."""
        max_ngram: int = 4
        proposal_tau: float = 1.0
        """Temperature of the hamming proposal."""

    def __init__(self, policy, config=None, *, reward=None) -> None:
        super().__init__(policy, config)
        _check_point(self.config.alpha, self.config.beta)
        if self.config.num_samples < 1:
            raise ValueError("num_samples must be ≥ 1 (y* is always among them)")
        self.reward = self.resolve_reward(reward)

    @property
    def point(self) -> ERPOPoint:
        """This instance's (R, α, β)."""
        return ERPOPoint(self.config.reward, self.config.alpha, self.config.beta)

    def _candidates(self, refs: SequenceBatch, context: SequenceBatch | None) -> tuple[SequenceBatch, Tensor | None]:
        M, vocab = self.config.num_samples - 1, self.policy.vocab
        if M == 0:
            return refs.with_context(None), None
        if self.config.proposal == "ngram":
            return ngram_replace(refs, vocab, M, self.config.max_ngram), None
        if self.config.proposal == "hamming":
            samples, log_s = hamming_proposal(refs, vocab, M, self.config.proposal_tau)
            return samples, log_s
        with torch.no_grad():
            samples = self.policy.sample(M, context)
        return samples.batch.with_context(None), samples.logp.double()

    def collect(self, batch: SequenceBatch) -> ERPORollout:
        refs = batch.with_context(None)
        B, M = batch.batch_size, self.config.num_samples
        others, log_s = self._candidates(refs, batch.context)
        width = max(refs.tokens.shape[1], others.tokens.shape[1] if M > 1 else 0)
        pad = torch.nn.functional.pad
        ref_tok = pad(refs.tokens, (0, width - refs.tokens.shape[1]))
        tokens = ref_tok[:, None]
        lengths = refs.lengths[:, None]
        if M > 1:
            other_tok = pad(others.tokens, (0, width - others.tokens.shape[1])).view(B, M - 1, width)
            tokens = torch.cat([tokens, other_tok], 1)
            lengths = torch.cat([lengths, others.lengths.view(B, M - 1)], 1)
        ctx = batch.context.repeat_interleave(M) if batch.context is not None else None
        candidates = SequenceBatch(tokens.reshape(B * M, width), lengths.reshape(B * M), ctx)
        rep_refs = refs.repeat_interleave(M)
        R = compute_reward(self.reward, candidates.with_context(None), rep_refs).double().view(B, M)
        log_proposal = None
        if log_s is not None:
            # y* itself is included deterministically; give it the proposal's density at y*.
            ref_log_s = torch.zeros(B, 1, dtype=torch.float64, device=batch.device)
            if self.config.proposal == "model":
                with torch.no_grad():
                    ref_log_s = self.policy.sequence_log_prob(batch).double()[:, None]
            log_proposal = torch.cat([ref_log_s, log_s.view(B, M - 1).to(ref_log_s)], 1)
        with torch.no_grad():
            log_p = self.policy.sequence_log_prob(candidates).double().view(B, M) if self.config.alpha else \
                torch.zeros(B, M, dtype=torch.float64, device=batch.device)
        weights = erpo_weights(log_p, R, self.config.alpha, self.config.beta, log_proposal)
        return ERPORollout(candidates, weights.float(), M)

    def loss(self, rollout: ERPORollout) -> tuple[Tensor, dict[str, float]]:
        logp = self.policy.sequence_log_prob(rollout.candidates).view(-1, rollout.num)
        loss = erpo_loss(logp, rollout.weights)
        return loss, {"ref_weight": float(rollout.weights[:, 0].mean())}


@register_algorithm("erpo")
class ERPO(_ERPOBase):
    """ERPO at any (R, α, β) the user gives (sequence level, payoff or model proposal)."""


@register_algorithm("raml")
class RAML(_ERPOBase):
    """RAML ([ERPO] Sec. 3.3, [VAML/ERAC] App. B.1): the point (R, α → 0, β = τ); y ~ exp(R/τ)
    by n-gram replacement or hamming proposals with normalized importance weights, y* included."""

    erpo_point = ERPOPoint(reward="R", alpha=0.0, beta=0.4)


def raml_loss(logp: Tensor, reward: Tensor, tau: float) -> Tensor:
    """Dedicated RAML objective (uniform proposal): −(1/B) Σ_b Σ_i softmax(R_b/τ)_i log p_θ(y_bi)."""
    return -(torch.softmax(reward / tau, -1).detach() * logp).sum(1).mean()
