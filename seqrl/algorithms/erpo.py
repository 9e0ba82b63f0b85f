"""Entropy-regularized policy optimization ([ERPO] Sec. 3.1).

    L(q, θ) = E_q[R(y|y*)] − α KL(q ‖ p_θ) + β H(q)                      (Eq. 1)
    E-step: q(y) ∝ exp{(α log p_θ(y) + R(y|y*)) / (α + β)}               (Eq. 2)
    M-step: θ ← argmax_θ E_q[log p_θ(y)]
    token level (Eq. 4, exact form): q(y_t | y_<t) = exp{(Q(y_<t, y_t) − V(y_<t)) / (α + β)}, with Q the
    soft-optimal Q-values of the per-token reward α log p_θ(y_t|y_<t) + ΔR(y_t|y_<t, y*) at temperature
    α + β ([VAML/ERAC] Prop. 1, Cor. 1); Eq. 4's product of per-token factors is its *unnormalized*
    form, and normalizing each factor over V alone (``erpo_token_e_step_local``) is an approximation.

MLE is (R_δ, α → 0, β = 1); RAML is (R, α → 0, β = τ); SPG is (R, α = 1, β = 0). The M-step
here is one importance-weighted log-likelihood over M candidates per reference drawn from a
payoff or model proposal (:mod:`seqrl.proposals`), corrected by the proposal's exact density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..proposals import (
    hamming_log_prob,
    hamming_proposal,
    ngram_log_prob,
    ngram_replace,
    samples_per_reference,
    stratified_log_prob,
    stratified_proposal,
)
from ..rewards.base import compute_reward
from ..types import SequenceBatch
from .base import Algorithm, DataConfig, ERPOPoint, Requirements, register_algorithm, resolve_reward

__all__ = ["ERPO", "RAML", "erpo_e_step", "erpo_loss", "erpo_token_e_step", "erpo_token_e_step_local",
           "erpo_weights", "raml_loss", "hamming_proposal", "ngram_replace"]


def _check_point(alpha: float, beta: float) -> None:
    if alpha < 0 or beta < 0 or alpha + beta <= 0:
        raise ValueError(f"ERPO needs α ≥ 0, β ≥ 0 and α + β > 0, got α={alpha}, β={beta}")


def erpo_e_step(log_p: Tensor, reward: Tensor, alpha: float, beta: float) -> Tensor:
    """log q over an enumerated set of sequences: log softmax((α log p + R)/(α + β)) (Eq. 2).

    ``alpha = 0`` is the limit α → 0; R may hold -inf (R_δ of Eq. 6)."""
    _check_point(alpha, beta)
    score = (alpha * log_p if alpha else torch.zeros_like(log_p)) + reward
    return torch.log_softmax(score / (alpha + beta), dim=-1)


def erpo_token_e_step(soft_q_t: Tensor, alpha: float, beta: float) -> Tensor:
    """[..., V] exact token-level E-step log q(· | y_<t) = log softmax(Q(y_<t, ·)/(α + β)) ([ERPO] Eq. 4).

    ``soft_q_t`` holds the soft-optimal Q-values of the per-token reward r_t = α log p_θ(y_t|y_<t) +
    ΔR(y_t|y_<t, y*) at temperature τ = α + β: Q(s, w) = r(s, w) + V(s + w), V(s) = τ log Σ_w e^{Q(s,w)/τ}
    (-inf where w is not allowed). By [VAML/ERAC] Prop. 1 / Cor. 1 the product of these token
    distributions is exactly Eq. 2's q(y) ∝ exp{(α log p_θ(y) + R(y))/τ}. On enumerable spaces
    ``seqrl.exact.soft_q_values`` computes Q by backward DP (α = 0: the reward itself; α > 0: pass a
    reward whose sequence value is α log p_θ(y) + R(y), the decomposition does not change the marginal).
    """
    _check_point(alpha, beta)
    return torch.log_softmax(soft_q_t / (alpha + beta), dim=-1)


def erpo_token_e_step_local(log_p_t: Tensor, delta_r_t: Tensor, alpha: float, beta: float) -> Tensor:
    """[..., V] per-token *approximation*, not [ERPO] Eq. 4: log softmax((α log p_θ + ΔR)/(α + β)) over V.

    It drops the future value V(y_<t+1) of the exact form (:func:`erpo_token_e_step`), so its sequence
    marginal differs from Eq. 2 (TVD 0.1–0.5 on small spaces); it is exact only when ΔR and p_θ make
    every continuation value equal (e.g. R constant beyond t)."""
    _check_point(alpha, beta)
    if log_p_t.shape != delta_r_t.shape:
        raise ValueError(f"log_p_t {tuple(log_p_t.shape)} and delta_r_t {tuple(delta_r_t.shape)} differ")
    score = (alpha * log_p_t if alpha else torch.zeros_like(log_p_t)) + delta_r_t
    score = score.masked_fill(log_p_t == -math.inf, -math.inf)  # ids the policy cannot emit stay impossible
    return torch.log_softmax(score / (alpha + beta), dim=-1)


def erpo_weights(log_p: Tensor, reward: Tensor, alpha: float, beta: float,
                 log_proposal: Tensor | None = None,
                 normalization: Literal["self", "leave_one_out"] = "self") -> Tensor:
    """[B, M] E-step importance weights of M candidates per reference (no gradient) ([ERPO] Eq. 2,
    [VAML/ERAC] App. B.1): r_i = exp{(α log p_θ(y_i) + R(y_i))/(α + β)} / s(y_i), s the proposal density
    (``None``: uniform).

    ``"self"``: w_i = r_i / Σ_j r_j (self-normalized; its M-step fixed point is q only as M → ∞).
    ``"leave_one_out"``: w_i = r_i / (M · mean_{j≠i} r_j); the normalizer is independent of y_i, so
    E[Σ_i w_i ∇log p_θ(y_i)] = c·E_q[∇ log p_θ] with c > 0: the fixed point is exactly q for every M ≥ 2
    (needs i.i.d. candidates; rows where every other r_j is 0 fall back to self-normalization).
    """
    if log_p.dim() != 2 or log_p.shape != reward.shape:
        raise ValueError(f"log_p and reward must both be [B, M], got {tuple(log_p.shape)}, {tuple(reward.shape)}")
    log_q = erpo_e_step(log_p.detach(), reward, alpha, beta)
    if log_proposal is not None:
        log_q = log_q - log_proposal
    snis = torch.softmax(log_q, dim=-1).detach()
    if normalization == "self":
        return snis
    if normalization != "leave_one_out":
        raise ValueError(f"normalization must be 'self' or 'leave_one_out', got {normalization!r}")
    M = log_q.shape[-1]
    if M < 2:
        raise ValueError("leave-one-out normalization needs M ≥ 2 candidates")
    eye = torch.eye(M, dtype=torch.bool, device=log_q.device)
    others = log_q[:, None, :].expand(-1, M, -1).masked_fill(eye, -math.inf)
    log_mean = torch.logsumexp(others, -1) - math.log(M - 1)  # [B, M] log mean_{j≠i} r_j
    loo = torch.where(log_q == -math.inf, torch.zeros_like(log_q), (log_q - log_mean).exp() / M)
    ok = torch.isfinite(log_mean).all(-1, keepdim=True)
    return torch.where(ok, loo, snis).detach()


def erpo_loss(logp: Tensor, weights: Tensor) -> Tensor:
    """M-step surrogate −(1/B) Σ_b Σ_i w_bi log p_θ(y_bi) for [B, M] log-probs and weights."""
    if logp.shape != weights.shape or logp.dim() != 2:
        raise ValueError(f"logp and weights must both be [B, M], got {tuple(logp.shape)}, {tuple(weights.shape)}")
    terms = torch.where(weights > 0, weights * logp, torch.zeros_like(logp))
    return -terms.sum(1).mean()


# --- the algorithm ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ERPORollout:
    candidates: SequenceBatch
    """[B·M] candidates, reference-major (y* first in each group of M when it is included)."""
    weights: Tensor
    """[B, M] E-step weights."""
    num: int


Proposal = Literal["stratified", "ngram", "hamming", "model"]


class _ERPOBase(Algorithm):
    """Sequence-level ERPO: M candidates per reference from a proposal, weighted by the E-step.

    Fixed point of the M-step per reference, as M → ∞ with ``normalization="self"`` and exactly for any
    M ≥ 2 with ``"leave_one_out"`` (q is Eq. 2's target; for RAML q ∝ exp(R/τ)):

    * ``stratified``: q over the policy's whole space (every length ≤ max_len); for the ``hamming``
      reward at τ = ``proposal_tau`` the proposal *is* q, so every weight is 1/M.
    * ``hamming``: q restricted to sequences of |y*|'s length (the proposal never changes the length).
    * ``ngram``: q restricted to sequences of |y*|'s length that differ from y* inside one window of at
      most ``max_ngram`` positions (the proposal's support), corrected by its exact density
      (:func:`seqrl.proposals.ngram_log_prob`), not treated as uniform.
    * ``model``: s = p_θ itself; q over the policy's whole space.

    ``include_reference`` (Ma et al., 2017; [VAML/ERAC] B.1) puts y* among the M candidates. Its bias
    is corrected by multiple importance sampling: every candidate is weighted against the mixture
    s_mix(y) = 1[y = y*] + (M−1)·s(y) of the deterministic y* and the M−1 proposal draws (balance
    heuristic), so the only bias left is self-normalization's O(1/M). It needs ``normalization="self"``.
    """

    requires = Requirements(reward=True, from_scratch=True)

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        reward: str = "bleu"
        """Registered reward R (any, including a user's)."""
        alpha: float = 0.0
        """KL weight α (0 stands for α → 0)."""
        beta: float = 0.4
        """Entropy weight β; for RAML the temperature τ ([ERPO] C.2: τ = 0.4)."""
        num_samples: int = 10
        """M candidates per reference, y* included when ``include_reference`` ([ERPO] C.2: 10)."""
        proposal: Proposal = "ngram"
        """``stratified`` (whole space, exact for hamming), ``ngram`` replacement (Ma et al.),
        ``hamming`` (Norouzi et al., |y*|'s length) or ``model`` (p_θ); all corrected by their exact density."""
        include_reference: bool = True
        """Put y* among the M candidates (bias corrected by the balance heuristic, see the class doc)."""
        normalization: Literal["self", "leave_one_out"] = "self"
        """Weight normalization (:func:`erpo_weights`): ``self`` (SNIS, O(1/M) bias) or ``leave_one_out``."""
        max_ngram: int = 4
        proposal_tau: float | None = None
        """Temperature of the stratified / hamming proposals (default: α + β, the E-step's)."""
        density_correction: bool = True
        """Divide by the proposal's density. False is the papers' practical recipe (Ma et al., 2017;
        [VAML/ERAC] B.1: weights softmax(R/τ) over the candidates, as if they were drawn from q): its
        fixed point is π ∝ s_mix(y)·exp(R/τ) on the proposal's support, not q."""

        def check(self) -> None:
            super().check()
            _check_point(self.alpha, self.beta)
            self.positive("num_samples", "max_ngram", "proposal_tau")
            if self.normalization == "leave_one_out" and (self.include_reference or self.num_samples < 2):
                raise ValueError("leave_one_out normalization needs i.i.d. candidates: include_reference=False and "
                                 "num_samples ≥ 2")

    config: Config

    def __init__(self, policy, config: Config | None = None, *, reward=None) -> None:
        super().__init__(policy, config)
        self.reward = resolve_reward(reward, self.config.reward, policy.vocab)
        self.policy_optimizer()

    @property
    def point(self) -> ERPOPoint:
        """This instance's (R, α, β)."""
        return ERPOPoint(self.config.reward, self.config.alpha, self.config.beta)

    @property
    def proposal_tau(self) -> float:
        tau = self.config.proposal_tau
        return float(tau) if tau is not None else self.config.alpha + self.config.beta

    def _draw(self, batch: SequenceBatch, num: int) -> SequenceBatch:
        """``num`` proposal draws per reference, reference-major, without context."""
        refs, vocab, c = batch.with_context(None), self.policy.vocab, self.config
        if c.proposal == "stratified":
            return stratified_proposal(refs, vocab, num, self.proposal_tau, self.policy.max_len)
        if c.proposal == "ngram":
            return ngram_replace(refs, vocab, num, c.max_ngram)
        if c.proposal == "hamming":
            return hamming_proposal(refs, vocab, num, self.proposal_tau)[0]
        with torch.no_grad():
            return samples_per_reference(self.policy, batch, num).batch.with_context(None)

    def _log_proposal(self, candidates: SequenceBatch, refs: SequenceBatch) -> Tensor:
        """[N] normalized log s(y | y*) of every candidate (``candidates`` carries the context)."""
        vocab, c = self.policy.vocab, self.config
        hyps = candidates.with_context(None)
        if c.proposal == "stratified":
            return stratified_log_prob(hyps, refs, vocab, self.proposal_tau, self.policy.max_len)
        if c.proposal == "ngram":
            return ngram_log_prob(hyps, refs, vocab, c.max_ngram)
        if c.proposal == "hamming":
            return hamming_log_prob(hyps, refs, vocab, self.proposal_tau)
        with torch.no_grad():
            return self.policy.sequence_log_prob(candidates).double()

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """M candidates per reference, their E-step weights (Eq. 2 over the candidates, divided by the proposal's
        density), one M-step on −Σ w log p_θ."""
        assert batch is not None, "ERPO's M-step learns from references: fit feeds it minibatches"
        loss, metrics = self.loss(self.collect(batch))
        return {**metrics, **self.optimize(loss)}

    def loss(self, rollout: ERPORollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """The M-step surrogate −Σ_i w_i log p_θ(y_i) on the rollout's candidates."""
        logp = self.policy.sequence_log_prob(rollout.candidates).view(-1, rollout.num)
        loss = erpo_loss(logp, rollout.weights.to(logp.device))
        return loss, {"weight_max": rollout.weights.max(1).values.mean()}

    @torch.no_grad()
    def collect(self, batch: SequenceBatch) -> ERPORollout:
        """The candidates (y* first when included, then proposal draws, reference-major) and their weights."""
        refs = batch.with_context(None)
        B, M, c = batch.batch_size, self.config.num_samples, self.config
        draws = M - 1 if c.include_reference else M
        groups, lengths = [], []
        if c.include_reference:
            groups.append(refs.tokens[:, None])
            lengths.append(refs.lengths[:, None])
        width = refs.tokens.shape[1]
        if draws > 0:
            others = self._draw(batch, draws)
            width = max(width, others.tokens.shape[1])
            groups.append(others.tokens.view(B, draws, -1))
            lengths.append(others.lengths.view(B, draws))
        pad = torch.nn.functional.pad
        tokens = torch.cat([pad(g, (0, width - g.shape[2])) for g in groups], 1).reshape(B * M, width)
        ctx = batch.context.repeat_interleave(M) if batch.context is not None else None
        candidates = SequenceBatch(tokens, torch.cat(lengths, 1).reshape(B * M), ctx)
        rep_refs = refs.repeat_interleave(M)
        R = compute_reward(self.reward, candidates.with_context(None), rep_refs).double().view(B, M)
        log_proposal = None
        if draws > 0 and c.density_correction:
            log_s = self._log_proposal(candidates, rep_refs).double().to(R.device)
            if c.include_reference:
                ref_tok = pad(rep_refs.tokens, (0, width - rep_refs.tokens.shape[1]))[:, :width].to(tokens.device)
                is_ref = (candidates.lengths == rep_refs.lengths) & ((tokens == ref_tok) | ~candidates.mask_t).all(1)
                spike = torch.where(is_ref.to(R.device), 0.0, -math.inf).double()
                log_s = torch.logaddexp(spike, math.log(draws) + log_s)  # balance heuristic, s_mix
            log_proposal = log_s.view(B, M)
        with torch.no_grad():
            log_p = self.policy.sequence_log_prob(candidates).double().view(B, M) if c.alpha else \
                torch.zeros(B, M, dtype=torch.float64, device=R.device)
        weights = erpo_weights(log_p.to(R.device), R, c.alpha, c.beta, log_proposal, c.normalization)
        return ERPORollout(candidates, weights.float(), M)


@register_algorithm("erpo")
class ERPO(_ERPOBase):
    """ERPO at any (R, α, β) the user gives ([ERPO] Eq. 1–2), sequence level: by default y* plus M−1
    n-gram replacements, self-normalized (the n-gram fixed point: q restricted to the proposal's support)."""

    in_default_bench = False  # at its defaults it is a RAML variant; benchmarks run it when asked


@register_algorithm("raml")
class RAML(_ERPOBase):
    """RAML ([ERPO] Sec. 3.3, [VAML/ERAC] App. B.1): the point (R, α → 0, β = τ), whose target is
    q(y) ∝ exp(R(y, y*)/τ) over the policy's whole space.

    Default: M i.i.d. draws of the ``stratified`` proposal (every length; exact q for the hamming reward)
    with leave-one-out normalized weights r_i = e^{R_i/τ}/s(y_i), whose M-step fixed point is exactly q for
    any reward. The papers' recipe (y* plus n-gram replacements, self-normalized) is ``proposal="ngram",
    include_reference=True, normalization="self"``; see :class:`_ERPOBase` for each proposal's fixed point.
    """

    erpo_point = ERPOPoint(reward="R", alpha=0.0, beta=0.4)

    @dataclass(frozen=True, kw_only=True)
    class Config(_ERPOBase.Config):
        proposal: Proposal = "stratified"
        include_reference: bool = False
        normalization: Literal["self", "leave_one_out"] = "leave_one_out"


def raml_loss(logp: Tensor, reward: Tensor, tau: float) -> Tensor:
    """[VAML/ERAC] App. B.1's simplified RAML objective −(1/B) Σ_b Σ_i softmax(R_b/τ)_i log p_θ(y_bi): the
    proposal treated as uniform on its support, so its fixed point is π ∝ s(y)·exp(R/τ) there, not exp(R/τ)."""
    return -(torch.softmax(reward / tau, -1).detach() * logp).sum(1).mean()
