"""Value augmented maximum likelihood, VAML ([VAML/ERAC] Sec. 4.1, App. B.2, Alg. 1–2).

RAML's target P_R(y) ∝ exp(R(y; y*)/τ) has a token-level form: P_{Q_R}(y_t | y_<t) = softmax(Q_R(y_<t, ·)/τ)
with Q_R the soft-optimal Q of the MDP whose per-token reward is ΔR (Prop. 1, Cor. 1). VAML learns it in two
phases, both on y* and M − 1 n-gram replacements of it (Ma et al., 2017; App. B.1):

* phase 1 (Alg. 1, the first ``q_steps`` optimizer steps, only the critic trains): soft Q-learning,
  min_φ (1/M) Σ_i Σ_t [Q_φ(y_<t, y_t) − r_t − τ log Σ_w exp(Q_φ(y_≤t, w)/τ)]²   (Eq. 16),
  with no target network and the gradient through both Q_φ and the look-ahead V_φ;
* phase 2 (Alg. 2, every later step, only the policy trains, Q_φ fixed): per token, with probability κ the
  cross-entropy CE(softmax(Q_φ(y_<t, ·)/τ) ‖ π_θ(· | y_<t)), else −log π_θ(y_t | y_<t) (MLE), each sample
  weighted by softmax(R/τ) over the M samples of its reference.

The critic Q_φ(y_<t, ·; y*) may read the reference ("oracle" critic, Sec. 4.1); any :class:`seqrl.critics.Critic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..critics import Critic, NetworkCritic, allowed, gather_q
from ..proposals import ngram_replace
from ..rewards.base import compute_reward, token_rewards
from ..types import SequenceBatch
from .base import Algorithm, DataConfig, ERPOPoint, Offer, Requirements, register_algorithm, resolve_reward

__all__ = ["VAML", "soft_q_loss", "soft_q_targets", "soft_values", "vaml_loss", "vaml_weights"]


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"VAML needs a temperature τ > 0, got {tau}")


def soft_values(q_t: Tensor, tau: float) -> Tensor:
    """[B, T] V(y_<t) = τ log Σ_w exp(Q(y_<t, w)/τ) over the allowed (finite) w ([VAML/ERAC] Eq. 10, 14).

    Args:
        q_t: [B, T, V] masked Q-values (-inf on ids the policy cannot emit); a row with no finite entry
            (nothing the critic interface produces) gives 0 rather than -inf.
    """
    if q_t.dim() != 3:
        raise ValueError(f"q_t must be [B, T, V], got {tuple(q_t.shape)}")
    _check_tau(tau)
    any_ok = allowed(q_t).any(-1, keepdim=True)
    q_safe = torch.where(any_ok, q_t, torch.zeros_like(q_t))  # an all -inf row would put NaN in the gradient
    return tau * torch.logsumexp(q_safe / tau, -1)


def soft_q_targets(q_t: Tensor, delta_r_t: Tensor, mask_t: Tensor, tau: float) -> Tensor:
    """[B, T] Q̂(y_<t, y_t) = r_t + τ log Σ_w exp(Q(y_≤t, w)/τ), and Q̂ = r_t at the final EOS ([VAML/ERAC]
    Alg. 1 line 5, Eq. 15; Eq. 8: no future after EOS). Not detached: the gradient flows through V too.

    Args:
        q_t: [B, T, V] masked Q(y_<t, ·) of every prefix of the batch (row t + 1 gives V(y_≤t)).
        delta_r_t: [B, T] r_t = ΔR(y_t | y_<t, y*) (:func:`seqrl.rewards.base.token_rewards`).
        mask_t: [B, T] True on real tokens (EOS included).
    """
    if delta_r_t.dim() != 2 or delta_r_t.shape != mask_t.shape or q_t.shape[:2] != mask_t.shape:
        raise ValueError(f"q_t [B, T, V], delta_r_t and mask_t [B, T] disagree: {tuple(q_t.shape)}, "
                         f"{tuple(delta_r_t.shape)}, {tuple(mask_t.shape)}")
    v_t = soft_values(q_t, tau)
    next_v_t = torch.nn.functional.pad(v_t[:, 1:], (0, 1))  # V(y_≤t) sits in row t + 1
    has_next_t = torch.nn.functional.pad(mask_t[:, 1:], (0, 1), value=False)  # False at the last token (EOS)
    return delta_r_t.to(v_t.dtype) + torch.where(has_next_t, next_v_t, torch.zeros_like(next_v_t))


def soft_q_loss(q_t: Tensor, tokens: Tensor, delta_r_t: Tensor, mask_t: Tensor, tau: float,
                residual_gradient: bool = True) -> Tensor:
    """(1/B) Σ_b Σ_t [Q(y_<t, y_t) − Q̂(y_<t, y_t)]², Q̂ of :func:`soft_q_targets` ([VAML/ERAC] Eq. 16, Alg. 1 l.6).

    With the B rows being the M samples of each reference, this is Alg. 1's (1/M) Σ_i Σ_t, averaged over
    references. ``residual_gradient=True`` (the paper's choice) differentiates through the target as well:
    Baird's (1995) residual gradient, true gradient descent on the squared Bellman residual, which needs no
    target network; and since the MDP is deterministic (string concatenation, Cor. 1) the residual has no
    double-sampling bias, so its zero is exactly the soft Bellman fixed point on the visited pairs.
    False stops the gradient at Q̂ (semi-gradient Q-learning).

    Args:
        q_t: [B, T, V] masked critic values; tokens, delta_r_t, mask_t: [B, T].
    Assumes: any trajectories (soft Q-learning is off-policy, Sec. 4.2).
    """
    if tokens.shape != mask_t.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and mask_t {tuple(mask_t.shape)} differ")
    target_t = soft_q_targets(q_t, delta_r_t, mask_t, tau)
    if not residual_gradient:
        target_t = target_t.detach()
    td_t = gather_q(q_t, tokens) - target_t
    return torch.where(mask_t, td_t**2, torch.zeros_like(td_t)).sum(1).mean()


def vaml_weights(reward: Tensor, tau: float) -> Tensor:
    """[B, M] w_i = exp(R(y_i, y*)/τ) / Σ_j exp(R(y_j, y*)/τ) over the M samples of each reference
    ([VAML/ERAC] Alg. 2 line 4, App. B.1); no gradient."""
    if reward.dim() != 2:
        raise ValueError(f"reward must be [B, M], got {tuple(reward.shape)}")
    _check_tau(tau)
    return torch.softmax(reward.detach() / tau, -1)


def vaml_loss(log_p_t: Tensor, q_t: Tensor, tokens: Tensor, mask_t: Tensor, weights: Tensor, tau: float,
              z_t: Tensor | float) -> Tensor:
    """(1/B) Σ_b Σ_i w_bi Σ_t J_κ, J_κ = z·CE(softmax(Q(y_<t, ·)/τ) ‖ π_θ(·|y_<t)) − (1 − z)·log π_θ(y_t|y_<t)
    ([VAML/ERAC] App. B.2, L_VAML of Alg. 2).

    Args:
        log_p_t: [B·M, T, V] log π_θ(· | y_<t) of the samples, reference-major (row b·M + i).
        q_t: [B·M, T, V] critic values Q_φ(y_<t, ·; y*) (treated as constants); entries where log_p_t is
            -inf are dropped from the target, so it lives where the policy does.
        tokens, mask_t: [B·M, T] the samples and their real-token mask.
        weights: [B, M] :func:`vaml_weights`.
        z_t: [B·M, T] per-token mix in [0, 1]: a Bernoulli(κ) draw (the paper's practice), or the scalar κ
            for J_κ's expectation over z.
    """
    if log_p_t.dim() != 3 or log_p_t.shape != q_t.shape or log_p_t.shape[:2] != mask_t.shape:
        raise ValueError(f"log_p_t and q_t must both be [B·M, T, V] over mask_t [B·M, T], got {tuple(log_p_t.shape)}, "
                         f"{tuple(q_t.shape)}, {tuple(mask_t.shape)}")
    if weights.dim() != 2 or weights.numel() != log_p_t.shape[0]:
        raise ValueError(f"weights must be [B, M] with B·M = {log_p_t.shape[0]} rows, got {tuple(weights.shape)}")
    _check_tau(tau)
    ok = allowed(log_p_t)
    q_masked = q_t.detach().masked_fill(~ok, -torch.inf)
    none = ~allowed(q_masked).any(-1, keepdim=True)  # (only where Q and π share no id) a uniform target, not NaN
    q_masked = torch.where(none & ok, torch.zeros_like(q_masked), q_masked)
    target = torch.softmax(q_masked / tau, -1)  # P_{Q_φ}(· | y_<t), Eq. 3
    zero = torch.zeros_like(log_p_t)
    ce_t = -(torch.where(target > 0, target, zero) * torch.where(target > 0, log_p_t, zero)).sum(-1)  # no 0·(−inf)
    nll_t = -log_p_t.gather(2, tokens.unsqueeze(2)).squeeze(2)
    z = torch.as_tensor(z_t, dtype=log_p_t.dtype, device=log_p_t.device)
    j_t = z * ce_t + (1 - z) * nll_t
    per_sample = torch.where(mask_t, j_t, torch.zeros_like(j_t)).sum(1)  # (B·M,)
    return (weights.to(per_sample) * per_sample.view(weights.shape)).sum(1).mean()


# --- the algorithm ---------------------------------------------------------------------------
@dataclass(frozen=True)
class VAMLRollout:
    phase: Literal["q", "policy"]
    """Which phase this step trains: ``q`` the critic (Alg. 1), ``policy`` the sequence model (Alg. 2)."""
    samples: SequenceBatch
    """[B·M] y* and its n-gram replacements, reference-major (y* first in each group), with the context."""
    references: SequenceBatch
    """[B·M] the reference y* of every sample (no context)."""
    delta_r_t: Tensor
    """[B·M, T] ΔR(y_t | y_<t, y*) in phase 1 (zeros in phase 2, which needs only R)."""
    weights: Tensor
    """[B, M] softmax(R/τ) over each reference's samples."""
    z_t: Tensor | float
    """[B·M, T] Bernoulli(κ) draws, or κ itself (``sample_kappa=False``)."""


@register_algorithm("vaml")
class VAML(Algorithm):
    """VAML ([VAML/ERAC] Sec. 4.1, App. B.2): soft Q-learning of an oracle critic for ``q_steps`` steps, then the
    policy's token-level cross-entropy to softmax(Q_φ/τ), κ-mixed with MLE, weighted by softmax(R/τ).

    Target: Q_φ → Q_R of Prop. 1 on the visited (prefix, token) pairs, and with κ = 1 and Q_φ = Q_R the policy
    → P_R = softmax(R/τ) at every prefix the samples visit (with κ < 1, each prefix's optimum mixes P_{Q_φ} with
    the weighted next-token frequencies of the samples). Pass ``critic=`` (any :class:`seqrl.critics.Critic`,
    e.g. a trained or exact one, with ``q_steps=0``); by default a :class:`~seqrl.critics.NetworkCritic` sized
    like the policy. The critic is a submodule, optimized in its own parameter group.

    Early stopping (:func:`~seqrl.training.fit`): during phase 1 the policy, hence every validation score of
    it, is the one training started from, so :meth:`monitor_ready` keeps phase 1's evaluations (all but the one
    at step 0) out of ``patience`` and of the best-weight choice; counting starts with phase 2's first.
    """

    # Alg. 2 trains the sequence model from scratch (the authors' train_vaml.py initializes a new actor), as RAML:
    # the scratch protocol of the benchmarks does too; the finetune protocol starts both from the pretrained policy
    # (phase 1 then half the budget). Phase 1 does not use up the patience (monitor_ready).
    requires = Requirements(reward=True, from_scratch=True)
    erpo_point = ERPOPoint(reward="R", alpha=0.0, beta=0.4)  # the policy's target is RAML's, P_R

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        reward: str = "bleu"
        """Registered reward R (Sec. 6.1: BLEU for translation)."""
        tau: float = 0.4
        """Temperature τ of exp(R/τ), of the soft values and of softmax(Q/τ) (Table 5, MT: 0.4; captioning 0.7)."""
        kappa: float = 0.2
        """Probability κ that a token is trained by the CE to softmax(Q_φ/τ) instead of MLE (Table 5, MT VAML-2:
        0.2; captioning 0.1; the authors' ``--vaml_coeff``)."""
        num_samples: int = 5
        """M samples per reference in phase 2, y* and M − 1 n-gram replacements (Table 5, MT VAML-2: 5)."""
        q_num_samples: int = 5
        """M samples per reference in phase 1 (Table 5, MT VAML-1: 5; captioning 2)."""
        max_ngram: int = 4
        """Longest replaced n-gram, n uniform in 1…max_ngram (App. B.1: n ≤ 4)."""
        q_steps: int = 1000
        """Phase 1's length in optimizer steps (only the critic trains); every later step is phase 2 (only
        the policy trains). The paper trains phase 1 to convergence; benchmarks give it half the budget."""
        critic_lr: float = 1e-3
        """Adam learning rate of the critic (Table 5, VAML-1: Adam, 0.001)."""
        critic_clip_grad_norm: float | None = 5.0
        """Gradient-norm clipping of the critic (App. B.4: 5.0); None: none."""
        sample_kappa: bool = True
        """Draw z ~ Bernoulli(κ) per token (App. B.2, the authors' ``random_mask``); False uses J_κ's
        expectation κ·CE + (1 − κ)·NLL (same expected gradient, less variance)."""
        residual_gradient: bool = True
        """Phase 1's gradient through both Q_φ and the look-ahead V_φ, no target network (Sec. 4.1, Baird 1995);
        False: semi-gradient (target detached)."""
        critic_reads_source: bool = False
        """The default critic also reads the source x of conditional tasks (Q_φ(y_<t, ·; x, y*)); False, the
        paper's: Q_φ(y_<t, ·; y*) (Alg. 1; the authors' critic encodes y* alone)."""
        weight_reward: str | None = None
        """The reward of phase 2's sequence weights softmax(R/τ_w) (None: ``reward``). The authors' ``train_vaml.py``
        weighs by plain sentence BLEU (``softmax(sent_bleu)``) while its Q-network learned from BLEU × |y*|
        (``train_q.py``: ``get_rewards``, scaled)."""
        weight_tau: float | None = None
        """τ_w of phase 2's sequence weights (None: ``tau``); ``train_vaml.py``'s ``softmax(sent_bleu)`` is τ_w = 1."""
        critic_only: bool = False
        """Phase 1 for the whole run: the Q-network's training as a run of its own (Alg. 1 "while not converged";
        the authors' ``train_q.py``), ranked by :meth:`VAML.critic_valid_loss`; phase 2 then gets it as ``critic=``
        with ``q_steps=0``."""

        def check(self) -> None:
            super().check()
            _check_tau(self.tau)
            if self.weight_tau is not None:
                _check_tau(self.weight_tau)
            if not 0.0 <= self.kappa <= 1.0:
                raise ValueError(f"κ must be in [0, 1], got {self.kappa}")
            self.positive("num_samples", "q_num_samples", "max_ngram", "critic_clip_grad_norm")
            self.at_least_zero("q_steps", "critic_lr")

    config: Config

    @classmethod
    def defaults_for(cls, policy, offer: Offer, given: dict[str, Any]) -> dict[str, Any]:
        """Half the run's step budget for phase 1, when the budget is known (the paper trains it to convergence)."""
        if offer.steps is None and offer.epochs is None:
            return {}
        return {"q_steps": max(1, offer.budget(given.get("batch_size", cls.Config.batch_size)) // 2)}

    def __init__(self, policy, config: Config | None = None, *, reward=None, critic: Critic | None = None) -> None:
        super().__init__(policy, config)
        c = self.config
        self.reward = resolve_reward(reward, c.reward, policy.vocab)
        self.weight_reward = self.reward if c.weight_reward is None else resolve_reward(None, c.weight_reward,
                                                                                       policy.vocab)
        self.critic = critic if critic is not None else NetworkCritic.for_policy(
            policy, reads_source=c.critic_reads_source)
        trainable = any(p.requires_grad for p in self.critic.parameters())
        if c.q_steps > 0 and not trainable:
            raise ValueError("phase 1 (q_steps > 0) trains the critic, and this one has no trainable parameters: "
                             "set q_steps=0 to use it as a fixed Q")
        self.policy_optimizer()
        if trainable:
            self.add_optimizer("critic", self.critic.parameters(), lr=c.critic_lr, clip=c.critic_clip_grad_norm)

    @property
    def phase(self) -> Literal["q", "policy"]:
        """The phase the next step trains."""
        return "q" if self.config.critic_only or self.steps < self.config.q_steps else "policy"

    def monitor_ready(self) -> bool:
        """False during phase 1 after the start: the policy is frozen, its scores repeat step 0's (a ``critic_only``
        run is ranked by its critic: always True)."""
        return self.config.critic_only or self.steps == 0 or self.steps > self.config.q_steps

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """Phase 1 (the first ``q_steps``): one soft Q-learning step of the critic (Eq. 16, Alg. 1); phase 2: one step
        of the policy's κ-mixed CE to softmax(Q_φ/τ) weighted by softmax(R/τ) (Alg. 2), Q_φ fixed."""
        assert batch is not None, "VAML learns from references: fit feeds it minibatches"
        loss, metrics = self.loss(self.collect(batch))
        return {**metrics, **self.optimize(loss)}

    def make_rollout(self, samples: SequenceBatch, references: SequenceBatch, num: int,
                     phase: Literal["q", "policy"] | None = None) -> VAMLRollout:
        """A rollout of given samples ([B·num], reference-major, with the context) against their references
        ([B·num], no context): ΔR per token, softmax(R/τ) weights per group of ``num``, and the κ draws."""
        c = self.config
        phase = phase or self.phase
        hyps = samples.with_context(None)
        if phase == "q":  # ΔR of every prefix: one reward call on B·M·T prefixes, which only Alg. 1 needs
            delta_r_t = token_rewards(self.reward, hyps, references).float()
            reward = delta_r_t.double().sum(1)  # Σ_t ΔR_t = R(y)
            if self.weight_reward is not self.reward:
                reward = compute_reward(self.weight_reward, hyps, references).double()
        else:
            reward = compute_reward(self.weight_reward, hyps, references).double()
            delta_r_t = torch.zeros(samples.tokens.shape, device=reward.device)
        weights = vaml_weights(reward.view(-1, num), c.tau if c.weight_tau is None else c.weight_tau).float()
        z_t: Tensor | float = c.kappa
        if c.sample_kappa:
            z_t = (torch.rand(samples.tokens.shape, device=samples.device) < c.kappa).float()
        return VAMLRollout(phase, samples, references, delta_r_t, weights, z_t)

    def collect(self, batch: SequenceBatch | None) -> VAMLRollout:
        """y* and M − 1 n-gram replacements per reference ([VAML/ERAC] Alg. 1–2, line 3)."""
        assert batch is not None, "VAML learns from references"
        return self._collect(batch, self.phase)

    def _collect(self, batch: SequenceBatch, phase: Literal["q", "policy"]) -> VAMLRollout:
        M = self.config.q_num_samples if phase == "q" else self.config.num_samples
        refs = batch.with_context(None)
        B = batch.batch_size
        groups, lengths = [refs.tokens[:, None]], [refs.lengths[:, None]]
        if M > 1:
            others = ngram_replace(refs, self.policy.vocab, M - 1, self.config.max_ngram)
            groups.append(others.tokens.view(B, M - 1, -1))
            lengths.append(others.lengths.view(B, M - 1))
        tokens = torch.cat(groups, 1).reshape(B * M, -1)  # ngram_replace keeps the width and the lengths
        ctx = batch.context.repeat_interleave(M) if batch.context is not None else None
        samples = SequenceBatch(tokens, torch.cat(lengths, 1).reshape(B * M), ctx)
        return self.make_rollout(samples, refs.repeat_interleave(M), M, phase)

    @torch.no_grad()
    def critic_valid_loss(self, valid: SequenceBatch, seed: int = 0) -> float:
        """Phase 1's soft Q-learning loss (Eq. 16) per token on the validation references and their n-gram
        replacements (drawn from ``seed``; the training stream untouched): what the critic's own phase stops on."""
        was = self.critic.training
        self.critic.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                rollout = self._collect(valid, "q")
            samples, refs = rollout.samples, rollout.references
            q_t = self.critic(samples, refs)
            mask = samples.mask_t.to(q_t.device)
            target = soft_q_targets(q_t, rollout.delta_r_t.to(q_t.device), mask, self.config.tau)
            td = gather_q(q_t, samples.tokens.to(q_t.device)) - target
            return float((td[mask] ** 2).mean())
        finally:
            self.critic.train(was)

    def loss(self, rollout: VAMLRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """Phase 1: the soft Q-learning loss of the critic; phase 2: the policy's VAML loss (Q_φ as constants)."""
        samples, refs = rollout.samples, rollout.references
        if rollout.phase == "q":
            q_t = self.critic(samples, refs)
            loss = soft_q_loss(q_t, samples.tokens.to(q_t.device), rollout.delta_r_t.to(q_t.device),
                               samples.mask_t.to(q_t.device), self.config.tau, self.config.residual_gradient)
            return loss, {"q_loss": loss.detach()}
        log_p_t = self.policy.log_dists(samples)
        with torch.no_grad():
            q_t = self.critic(samples, refs).to(log_p_t)
        dev = log_p_t.device
        z_t = rollout.z_t.to(dev) if isinstance(rollout.z_t, Tensor) else rollout.z_t
        loss = vaml_loss(log_p_t, q_t, samples.tokens.to(dev), samples.mask_t.to(dev), rollout.weights.to(dev),
                         self.config.tau, z_t)
        return loss, {"vaml_loss": loss.detach()}
