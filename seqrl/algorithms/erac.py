"""Entropy-regularized actor-critic ([VAML/ERAC] Sec. 4.2, Alg. 3) and actor-critic (AC, its τ = 0 case).

On the actor's own samples y ~ π_θ(· | x*), with r_t = ΔR(y_t | y_<t, y*) ([VAML/ERAC] Eq. 13):

* critic (Eq. 18–19): L_critic = Σ_t [Q_φ(y_<t, y_t) − Q̂_t]² + λ_var Σ_t Σ_w [Q_φ(y_<t, w) − Q̄_φ(y_<t)]², with the
  TD target Q̂_t = r_t + τ H(π(·|y_≤t)) + Σ_w π(w|y_≤t) Q_φ̄(y_≤t, w) (zero future after the last token), i.e. the
  fixed-policy soft Bellman equation Eq. 9 (γ = 1): its fixed point is the soft Q^π that
  :func:`seqrl.exact.soft_q_values` (``policy=``) computes.
* actor (Eq. 20): L_actor = −Σ_t [Σ_w π(w|y_<t) Q_φ(y_<t, w) + τ H(π(·|y_<t))] − λ_mle Σ_t log π(y*_t | y*_<t).
* target critic φ̄ ← β·φ + (1 − β)·φ̄ after every step (Alg. 3 l. 11); smoothing λ_var (Bahdanau et al., 2016).

Phases (App. B.3): the actor is pretrained by MLE outside (the benchmark's pretraining or the user); for the
first ``critic_pretrain_steps`` steps only the critic learns (actor fixed); then both. Actor and critic have their
own Adam and clipping (5.0 each, App. B.4) and Table 6's learning rates per phase, all set in :meth:`ERAC.update`:
critic 1e-3 while it pretrains, actor and critic 1e-4 in joint training, the actor's lr multiplied by ``lr_decay``
(0.5: "halved", App. B.4) after each joint-training validation check worse than the best joint-training one. While
the critic pretrains, the actor (hence every validation score of it) is fixed: :meth:`ERAC.monitor_ready` keeps
those evaluations out of the loop's early stopping.
Losses are summed over tokens and averaged over the samples of a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..critics import Critic, NetworkCritic, TargetCritic, entropy_t, expected_q, gather_q, variance_penalty
from ..metrics import cross_entropy, reward_score
from ..proposals import samples_per_reference
from ..rewards.base import token_rewards
from ..types import SequenceBatch
from .base import Algorithm, DataConfig, Offer, Requirements, register_algorithm, resolve_reward


def soft_td_target(reward_t: Tensor, log_pi_t: Tensor, q_bar_t: Tensor, lengths: Tensor, tau: float) -> Tensor:
    """[B, T] Q̂(y_<t, y_t) = r_t + τ H(π(·|y_≤t)) + Σ_w π(w|y_≤t) Q̄(y_≤t, w) ([VAML/ERAC] Eq. 19); 0 future at the end.

    ``log_pi_t``, ``q_bar_t``: [B, T, V] rows aligned with the batch (row t: after y_<t), so the future of token
    t is row t + 1; it counts only while t + 1 < length (nothing follows EOS).
    """
    v_next = expected_q(log_pi_t, q_bar_t) + tau * entropy_t(log_pi_t)  # (B, T): soft V of row t's prefix
    future = torch.nn.functional.pad(v_next[:, 1:], (0, 1))
    steps = torch.arange(reward_t.shape[1], device=reward_t.device)[None]
    future = torch.where(steps + 1 < lengths[:, None], future, torch.zeros_like(future))
    return reward_t + future


@dataclass(frozen=True)
class ERACRollout:
    samples: SequenceBatch
    """y ~ π, B·num rows (context: the repeated sources)."""
    refs: SequenceBatch | None
    """y* of every sample row (no context); None when the reward reads none."""
    reward_t: Tensor
    """[B·num, T] ΔR(y_t | y_<t, y*)."""
    data: SequenceBatch
    """The minibatch of references (for the MLE term)."""


@register_algorithm("erac")
class ERAC(Algorithm):
    """ERAC ([VAML/ERAC] Alg. 3): a critic trained by soft TD on the actor's samples; the actor follows Eq. 20.

    ``critic=``: any :class:`~seqrl.critics.Critic` (tests pass a TabularCritic); default: a
    :class:`~seqrl.critics.NetworkCritic` sized from the policy (it reads y*; also x with
    ``critic_reads_source``). Its whole schedule is in :meth:`update`: the critic-pretraining phase, Table 6's
    learning rates per phase, the target critic's Polyak average, and the actor's lr decay on the validation
    reward, which it checks itself every ``check_every`` steps (``valid=`` is then required).
    """

    requires = Requirements(reward=True, validation=True)
    resumable = ("steps", "actor_lr_scale", "decay_best")

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        lr: float = 1e-4
        """Actor's Adam lr in joint training, before any decay (Table 6: 1e-4)."""
        clip_grad_norm: float | None = 5.0
        """Actor's gradient-norm clip (App. B.4: 5.0; 1.0 for captioning)."""
        reward: str = "bleu"
        """The task metric R(y; y*) whose increments are the token rewards (Sec. 6: BLEU for MT)."""
        tau: float = 0.05
        """Entropy weight τ (Table 6, MT with input feeding; 0.04 without, 0.01 captioning)."""
        beta: float = 0.001
        """Target critic rate β: φ̄ ← β·φ + (1 − β)·φ̄ (Table 6; 1 = no target network, Table 3)."""
        lambda_var: float = 0.001
        """Weight λ_var of the critic's smoothing term (Table 6; 0 = none, Table 3)."""
        lambda_mle: float = 0.1
        """Weight λ_mle of the MLE term kept in the actor loss during joint training (Table 6)."""
        future_entropy: bool = True
        """False: τ = 0 in the critic's TD target while the actor keeps τ (Table 4, "w/o future entropy")."""
        critic_pretrain_steps: int = 0
        """Steps during which only the critic learns, the actor fixed (App. B.3's second phase; the builder sets
        one epoch, at most a quarter of the budget, when the run offers data)."""
        num_samples: int = 1
        """Samples y ~ π per reference (Alg. 3 l. 4: one)."""
        critic_lr: float = 1e-3
        """Critic's Adam lr while it pretrains, the actor fixed (Table 6, "Pre-train Critic": 1e-3)."""
        joint_critic_lr: float = 1e-4
        """Critic's Adam lr in joint training (Table 6, "Joint Training": 1e-4; the authors' ``--crt_lr``)."""
        critic_clip: float | None = 5.0
        """Critic's gradient-norm clip (App. B.4)."""
        lr_decay: float = 0.5
        """Factor on the actor's lr after each joint-training check whose ``lr_decay_metric`` is worse than
        the best so far (App. B.4: "the learning rate is halved when there is no improvement on the validation
        set"; which lr the paper does not say: the authors' ``train_erac.py`` anneals the actor's, by 0.9, on
        validation BLEU, a tie counting as an improvement). 1: no decay."""
        lr_decay_metric: Literal["valid_reward", "valid_ce"] | None = "valid_reward"
        """What the decay watches on ``valid=``: the reward of greedy decodes (its corpus score, e.g. corpus
        BLEU; higher is better) or the cross-entropy (lower is better); None: no decay."""
        check_every: int = 50
        """Steps between its validation checks (the builder sets one epoch when the run offers data)."""
        critic_reads_source: bool = False
        """The default critic also reads the source x of conditional tasks (Q_φ(y_<t, ·; x, y*)); False, the
        paper's: Q_φ(y_<t, ·; y*) (Alg. 3; the authors' critic encodes y* alone)."""
        smoothing: Literal["variance", "sum"] = "variance"
        """How the λ_var term reduces over the vocabulary: ``variance``, the sample variance of Q(y_<t, ·), as the
        authors' code takes it (``Q_all.var(2)``, ``train_critic.py``/``train_erac.py``) and Sec. 4.2 names it
        ("the 'variance' of Q-values"); ``sum``, Alg. 3 l.7's Σ_w (|𝒲| − 1 times stronger at the same λ_var)."""
        critic_pretrain_beta1: float = 0.9
        """Adam's β1 of the critic while it pretrains (the authors' ``train_critic.py``: ``--beta1 0.9``)."""
        joint_beta1: float = 0.0
        """Adam's β1 of actor and critic in joint training (the authors' ``train_erac.py``: ``--act_beta1 0``,
        ``--crt_beta1 0``; the paper gives no β1)."""
        actor_entropy: Literal["exact", "normalized"] = "exact"
        """The actor's local entropy term: ``exact``, τ·H(π(·|y_<t)) (Eq. 20); ``normalized``, τ·H/‖log π(·|y_<t)‖₂
        (norm detached), whose gradient is the authors' ``train_erac.py`` ("pg_signal -= tau * log_dist /
        norm(log_dist)": normalized to avoid instability), a local term ‖log π‖ times weaker than Eq. 20's."""
        critic_only: bool = False
        """Only the critic learns, for the whole run: App. B.3's critic pretraining as a phase of its own (the
        authors' ``train_critic.py``, trained to convergence on the validation TD error,
        :meth:`ERAC.critic_valid_loss`); its evaluations then rank the critic (:meth:`ERAC.monitor_ready`). Joint
        training then starts from that critic (``critic=``, ``critic_pretrain_steps=0``)."""

        def check(self) -> None:
            super().check()
            self.at_least_zero("tau", "lambda_var", "lambda_mle", "critic_pretrain_steps", "critic_lr",
                               "joint_critic_lr")
            self.positive("num_samples", "check_every", "critic_clip")
            if not 0 < self.beta <= 1:
                raise ValueError(f"beta must be in (0, 1], got {self.beta}")
            if not 0 < self.lr_decay <= 1:
                raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
            for name in ("critic_pretrain_beta1", "joint_beta1"):
                if not 0 <= getattr(self, name) < 1:
                    raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    config: Config

    @classmethod
    def defaults_for(cls, policy, offer: Offer, given: dict[str, Any]) -> dict[str, Any]:
        """Critic pretraining (App. B.3) for one epoch, at most a quarter of the run's budget; checks every epoch."""
        if offer.train is None:
            return {}
        batch = given.get("batch_size", cls.Config.batch_size)
        epoch = offer.steps_per_epoch(batch)
        return {"critic_pretrain_steps": max(1, min(epoch, offer.budget(batch) // 4)), "check_every": epoch}

    def __init__(self, policy, config: Config | None = None, *, reward=None, critic: Critic | None = None,
                 valid: SequenceBatch | None = None) -> None:
        super().__init__(policy, config)
        cfg = self.config
        if cfg.lr_decay_metric is not None and cfg.lr_decay < 1 and (valid is None or valid.batch_size == 0):
            raise ValueError(f"{self.name} decays its lr on {cfg.lr_decay_metric}: pass valid=<validation batch> "
                             "(or lr_decay_metric=None)")
        self.reward = resolve_reward(reward, cfg.reward, policy.vocab)
        self.valid = valid
        self.critic: Critic = critic if critic is not None else NetworkCritic.for_policy(
            policy, reads_source=cfg.critic_reads_source)
        self.target = TargetCritic(self.critic, cfg.beta)
        self.actor_lr_scale = 1.0
        """Product of the decays so far."""
        self.decay_best = math.nan
        """Best ``lr_decay_metric`` among the checks the decay has ranked (NaN: none yet)."""
        self.add_optimizer("policy", policy.parameters(), lr=cfg.lr, clip=cfg.clip_grad_norm,
                       weight_decay=cfg.weight_decay)
        self.add_optimizer("critic", self.critic.parameters(), lr=cfg.critic_lr, clip=cfg.critic_clip)

    @property
    def pretraining_critic(self) -> bool:
        """Whether the actor is still fixed (App. B.3's critic pretraining)."""
        return self.config.critic_only or self.steps < self.config.critic_pretrain_steps

    def monitor_ready(self) -> bool:
        """False while the critic pretrains after the start: the actor, all validation measures, is unchanged (a
        ``critic_only`` run is ranked by its critic: always True)."""
        return self.config.critic_only or self.steps == 0 or self.steps > self.config.critic_pretrain_steps

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """Table 6's lrs for the phase; y ~ π; the critic's soft TD step (and the actor's Eq. 20 step after
        pretraining), each with its own Adam and clip; the Polyak update of Q̄; the lr decay check."""
        assert batch is not None, "ERAC learns from references: fit feeds it minibatches"
        cfg, pretraining = self.config, self.pretraining_critic
        self.set_lr("policy", cfg.lr if pretraining else cfg.lr * self.actor_lr_scale)
        self.set_lr("critic", cfg.critic_lr if pretraining else cfg.joint_critic_lr)
        for group in ("policy", "critic"):
            self.set_beta1(group, cfg.critic_pretrain_beta1 if pretraining else cfg.joint_beta1)
        rollout = self.collect(batch)
        loss, metrics = self.loss(rollout)
        metrics.update({"lr_policy": self._lr("policy"), "lr_critic": self._lr("critic")})
        metrics.update(self.optimize(loss))
        self.target.update()  # Alg. 3 l. 11
        if self.steps % cfg.check_every == 0:
            self.check_validation()
        return metrics

    def loss(self, rollout: ERACRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """The critic's loss, plus the actor's once the critic's pretraining is over (the actor then gets no
        gradient at all), and the step's metrics."""
        y, pretraining = rollout.samples, self.pretraining_critic
        with torch.set_grad_enabled(torch.is_grad_enabled() and not pretraining):
            log_pi_t = self.policy.log_dists(y)
        q_t = self.critic(y, rollout.refs)
        critic, _ = self.critic_loss(rollout, log_pi_t, q_t)
        metrics: dict[str, Tensor | float] = {"reward": rollout.reward_t.sum(1).mean(), "critic_loss": critic.detach(),
                                             "entropy": (entropy_t(log_pi_t.detach()) * y.mask_t).sum(1).mean()}
        if pretraining:
            return critic, metrics
        actor = self.actor_loss(rollout, log_pi_t, q_t)
        metrics["actor_loss"] = actor.detach()
        return critic + actor, metrics

    def _lr(self, group: str) -> float:
        return float(self._optimizers[group].optimizer.param_groups[0]["lr"])

    def check_validation(self) -> None:
        """The lr decay of App. B.4: a joint-training check worse than the best joint-training one so far multiplies
        the actor's lr by ``lr_decay`` (a tie is no worse; as in the authors' ``train_erac.py``, the starting actor
        is not ranked, so the first joint-training check never decays)."""
        cfg = self.config
        if cfg.lr_decay_metric is None or cfg.lr_decay == 1 or self.pretraining_critic or \
                self.steps <= cfg.critic_pretrain_steps:
            return
        assert self.valid is not None
        if cfg.lr_decay_metric == "valid_reward":
            value, sign = reward_score(self.reward, self.policy, self.valid), 1.0
        else:
            value, sign = cross_entropy(self.policy, self.valid), -1.0
        if math.isnan(self.decay_best) or sign * value >= sign * self.decay_best:
            self.decay_best = float(value)
        else:
            self.actor_lr_scale *= cfg.lr_decay

    @torch.no_grad()
    def collect(self, batch: SequenceBatch) -> ERACRollout:
        """``num_samples`` y ~ π per reference, with the token rewards ΔR(y_t | y_<t, y*)."""
        num = self.config.num_samples
        samples = samples_per_reference(self.policy, batch, num).batch
        refs = batch.with_context(None).repeat_interleave(num).to(samples.device) \
            if getattr(self.reward, "needs_reference", True) else None
        reward_t = token_rewards(self.reward, samples.with_context(None), refs).to(samples.device).float()
        return ERACRollout(samples, refs, reward_t, batch)

    def critic_loss(self, rollout: ERACRollout, log_pi_t: Tensor, q_t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean over samples of Σ_t (Q(y_<t, y_t) − Q̂_t)² + λ_var penalty (Alg. 3 l. 7); also returns Q̂ [B, T]."""
        cfg, y = self.config, rollout.samples
        with torch.no_grad():
            q_bar_t = self.target(y, rollout.refs)
            tau_critic = cfg.tau if cfg.future_entropy else 0.0
            q_hat_t = soft_td_target(rollout.reward_t, log_pi_t.detach(), q_bar_t, y.lengths, tau_critic)
        td_t = torch.where(y.mask_t, (gather_q(q_t, y.tokens) - q_hat_t) ** 2, torch.zeros_like(q_hat_t))
        smooth = variance_penalty(q_t, y.mask_t, cfg.lambda_var, cfg.smoothing) if cfg.lambda_var > 0 \
            else td_t.new_zeros(())
        return (td_t.sum(1) + smooth).mean(), q_hat_t

    @torch.no_grad()
    def critic_valid_loss(self, valid: SequenceBatch, seed: int = 0) -> float:
        """Mean |Q_φ(y_<t, y_t) − Q̂_t| per token on one sample of the actor per validation source (drawn from
        ``seed``, the training stream untouched), Q̂ formed with the critic itself: the measure the authors'
        ``train_critic.py`` stops critic pretraining on ("valid td error")."""
        was = self.policy.training, self.critic.training
        self.policy.eval()
        self.critic.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                rollout = self.collect(valid.to(self.policy.device))
            y = rollout.samples
            log_pi_t = self.policy.log_dists(y)
            q_t = self.critic(y, rollout.refs)
            tau = self.config.tau if self.config.future_entropy else 0.0
            q_hat = soft_td_target(rollout.reward_t, log_pi_t, q_t, y.lengths, tau)
            td = (gather_q(q_t, y.tokens) - q_hat).abs()
            return float(td[y.mask_t].mean())
        finally:
            self.policy.train(was[0])
            self.critic.train(was[1])

    def actor_loss(self, rollout: ERACRollout, log_pi_t: Tensor, q_t: Tensor) -> Tensor:
        """−mean Σ_t [Σ_w π(w|y_<t) Q(y_<t, w) + τ H(π(·|y_<t))] + λ_mle·NLL(y*) (Alg. 3 l. 8, Eq. 20)."""
        cfg, y = self.config, rollout.samples
        entropy = entropy_t(log_pi_t)
        if cfg.actor_entropy == "normalized":
            ok = torch.isfinite(log_pi_t)
            norm = torch.where(ok, log_pi_t, torch.zeros_like(log_pi_t)).detach().norm(dim=-1)
            entropy = entropy / (1e-8 + norm)
        gain_t = expected_q(log_pi_t, q_t.detach()) + cfg.tau * entropy
        loss = -torch.where(y.mask_t, gain_t, torch.zeros_like(gain_t)).sum(1).mean()
        if cfg.lambda_mle > 0:
            loss = loss - cfg.lambda_mle * self.policy.sequence_log_prob(rollout.data).mean()
        return loss


@register_algorithm("ac")
class AC(ERAC):
    """Actor-critic of Bahdanau et al. (2016) as [VAML/ERAC] runs it (Sec. 6.2, App. B.4): ERAC with τ = 0,
    every other default the same (Table 6)."""

    config: ERAC.Config

    @dataclass(frozen=True, kw_only=True)
    class Config(ERAC.Config):
        tau: float = 0.0
        """τ = 0: no entropy regularization (App. B.4: "the same hyper-parameters … except τ is 0")."""
