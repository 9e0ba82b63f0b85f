"""Entropy-regularized actor-critic ([VAML/ERAC] Sec. 4.2, Alg. 3) and actor-critic (AC, its τ = 0 case).

On the actor's own samples y ~ π_θ(· | x*), with r_t = ΔR(y_t | y_<t, y*) ([VAML/ERAC] Eq. 13):

* critic (Eq. 18–19): L_critic = Σ_t [Q_φ(y_<t, y_t) − Q̂_t]² + λ_var Σ_t Σ_w [Q_φ(y_<t, w) − Q̄_φ(y_<t)]², with the
  TD target Q̂_t = r_t + τ H(π(·|y_≤t)) + Σ_w π(w|y_≤t) Q_φ̄(y_≤t, w) (zero future after the last token), i.e. the
  fixed-policy soft Bellman equation Eq. 9 (γ = 1): its fixed point is the soft Q^π that
  :func:`seqrl.exact.soft_q_values` (``policy=``) computes.
* actor (Eq. 20): L_actor = −Σ_t [Σ_w π(w|y_<t) Q_φ(y_<t, w) + τ H(π(·|y_<t))] − λ_mle Σ_t log π(y*_t | y*_<t).
* target critic φ̄ ← β·φ + (1 − β)·φ̄ after every step (Alg. 3 l. 11); smoothing λ_var (Bahdanau et al., 2016).

Phases (App. B.3): the actor is pretrained by MLE outside (the benchmark's pretraining or the user); for the
first ``critic_pretrain_steps`` steps only the critic learns (actor fixed); then both. Actor and critic are
separate :class:`~seqrl.algorithms.base.ParamGroup` s with their own Adam and clipping (5.0 each, App. B.4), and
Table 6's learning rates per phase, set through :meth:`ERAC.group_lr`: critic 1e-3 while it pretrains, actor and
critic 1e-4 in joint training, the actor's lr multiplied by ``lr_decay`` (0.5: "halved", App. B.4) after each
joint-training evaluation worse on validation than the best joint-training one. While the critic pretrains, the actor
(hence every validation score of it) is fixed: :meth:`ERAC.monitor_ready` keeps those evaluations out of early
stopping and of the decay.
Losses are summed over tokens and averaged over the samples of a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from ..critics import Critic, NetworkCritic, TargetCritic, entropy_t, expected_q, gather_q, variance_penalty
from ..proposals import samples_per_reference
from ..rewards.base import token_rewards
from ..types import SequenceBatch
from .base import Algorithm, ParamGroup, Requirements, RunContext, register_algorithm


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
    ``critic_reads_source``). With the default ``lr_decay_metric``, :func:`~seqrl.training.fit` needs
    ``valid=`` (or an ``evaluate=`` giving ``valid_reward``); ``lr_decay_metric=None`` trains without.
    """

    requires = Requirements(reward=True)

    config: Config  # set by Algorithm.__init__
    steps_done: Tensor  # buffer: optimizer steps taken (the phase of App. B.3 survives checkpoints)

    @dataclass(frozen=True, kw_only=True)
    class Config:
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
        """Steps during which only the critic learns, the actor fixed (App. B.3's second phase)."""
        num_samples: int = 1
        """Samples y ~ π per reference (Alg. 3 l. 4: one)."""
        actor_lr: float = 1e-4
        """Actor's Adam lr in joint training, before any decay (Table 6: 1e-4)."""
        critic_lr: float = 1e-3
        """Critic's Adam lr while it pretrains, the actor fixed (Table 6, "Pre-train Critic": 1e-3)."""
        joint_critic_lr: float = 1e-4
        """Critic's Adam lr in joint training (Table 6, "Joint Training": 1e-4; the authors' ``--crt_lr``)."""
        lr_decay: float = 0.5
        """Factor on the actor's lr after each joint-training evaluation whose ``lr_decay_metric`` is worse than
        the best so far (App. B.4: "the learning rate is halved when there is no improvement on the validation
        set"; which lr the paper does not say: the authors' ``train_erac.py`` anneals the actor's, by 0.9, on
        validation BLEU, a tie counting as an improvement). 1: no decay."""
        lr_decay_metric: str | None = "valid_reward"
        """Evaluation metric the decay watches (fit must then be given ``valid=`` or an ``evaluate=`` that
        returns it); None: no decay. Critic pretraining keeps its lr (its validation TD error, which the
        authors anneal on, is not among fit's evaluations)."""
        lr_decay_mode: Literal["max", "min"] = "max"
        """Whether higher (``max``, e.g. BLEU) or lower (``min``, e.g. ``valid_ce``) values of the metric are better."""
        critic_reads_source: bool = False
        """The default critic also reads the source x of conditional tasks (Q_φ(y_<t, ·; x, y*)); False, the
        paper's: Q_φ(y_<t, ·; y*) (Alg. 3; the authors' critic encodes y* alone)."""
        actor_clip: float | None = 5.0
        """Actor's gradient-norm clip (App. B.4: 5.0; 1.0 for captioning)."""
        critic_clip: float | None = 5.0
        """Critic's gradient-norm clip (App. B.4)."""

    def __init__(self, policy, config=None, *, reward=None, critic: Critic | None = None) -> None:
        super().__init__(policy, config)
        cfg = self.config
        if cfg.tau < 0:
            raise ValueError(f"τ must be ≥ 0, got {cfg.tau}")
        if cfg.num_samples < 1:
            raise ValueError(f"num_samples must be ≥ 1, got {cfg.num_samples}")
        if cfg.lambda_var < 0 or cfg.lambda_mle < 0 or cfg.critic_pretrain_steps < 0:
            raise ValueError("lambda_var, lambda_mle and critic_pretrain_steps must be ≥ 0")
        for name in ("actor_lr", "critic_lr", "joint_critic_lr"):
            if not getattr(cfg, name) >= 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(cfg, name)}")
        if not 0 < cfg.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {cfg.lr_decay}")
        if cfg.lr_decay_mode not in ("max", "min"):
            raise ValueError(f"lr_decay_mode must be 'max' or 'min', got {cfg.lr_decay_mode!r}")
        self.reward = self.resolve_reward(reward)
        self.critic: Critic = critic if critic is not None else NetworkCritic.for_policy(
            policy, reads_source=cfg.critic_reads_source)
        self.target = TargetCritic(self.critic, cfg.beta)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.actor_lr_scale = 1.0
        """Product of the decays so far (a plain attribute: fit's training state saves it)."""
        self.decay_best = math.nan
        """Best ``lr_decay_metric`` among the evaluations the decay has ranked (NaN: none yet)."""
        if cfg.lr_decay_metric is not None and cfg.lr_decay < 1:  # fit checks that evaluations provide it
            # per instance (the metric is a setting); the class's Requirements, which suites read, stay as declared
            setattr(self, "requires", replace(type(self).requires, monitors=(cfg.lr_decay_metric,)))  # noqa: B010

    @classmethod
    def bench_kwargs(cls, context: RunContext) -> dict[str, Any]:
        """Critic pretraining (App. B.3) for one epoch, at most a quarter of the run's budget."""
        steps = max(1, min(context.steps_per_epoch, context.budget_steps // 4))
        return {**super().bench_kwargs(context), "critic_pretrain_steps": steps}

    def param_groups(self) -> list[ParamGroup]:
        """Actor and critic, each with its own Adam and clipping (App. B.4); the lrs here are the first step's,
        :meth:`group_lr` sets every step's (Table 6)."""
        cfg = self.config
        actor = [p for p in self.policy.parameters() if p.requires_grad]
        critic = [p for p in self.critic.parameters() if p.requires_grad]
        return [ParamGroup("policy", actor, lr=cfg.actor_lr, clip_grad_norm=cfg.actor_clip),
                ParamGroup("critic", critic, lr=cfg.critic_lr, clip_grad_norm=cfg.critic_clip)]

    @property
    def pretraining_critic(self) -> bool:
        """Whether the actor is still fixed (App. B.3's critic pretraining)."""
        return int(self.steps_done) < self.config.critic_pretrain_steps

    def group_lr(self, step: int) -> dict[str, float]:
        """Table 6's rates for the next step: critic ``critic_lr`` while it pretrains (the actor gets no
        gradient then), else actor ``actor_lr``·(decays so far) and critic ``joint_critic_lr``."""
        cfg = self.config
        if self.pretraining_critic:
            return {"policy": cfg.actor_lr, "critic": cfg.critic_lr}
        return {"policy": cfg.actor_lr * self.actor_lr_scale, "critic": cfg.joint_critic_lr}

    def monitor_ready(self) -> bool:
        """False while the critic pretrains after the start: the actor, all validation measures, is unchanged."""
        done = int(self.steps_done)
        return done == 0 or done > self.config.critic_pretrain_steps

    def on_evaluation(self, step: int, metrics: dict[str, float]) -> None:
        """The lr decay of App. B.4: a joint-training evaluation worse than the best joint-training one so far
        multiplies the actor's lr by ``lr_decay`` (a tie is no worse; as in the authors' ``train_erac.py``, the
        evaluation of the starting actor is not ranked, so the first joint-training one never decays)."""
        cfg = self.config
        if cfg.lr_decay_metric is None or cfg.lr_decay == 1 or int(self.steps_done) <= cfg.critic_pretrain_steps:
            return
        value = metrics[cfg.lr_decay_metric]
        sign = 1.0 if cfg.lr_decay_mode == "max" else -1.0
        if math.isnan(self.decay_best) or sign * value >= sign * self.decay_best:
            self.decay_best = float(value)
        else:
            self.actor_lr_scale *= cfg.lr_decay

    def collect(self, batch: SequenceBatch | None) -> ERACRollout:
        assert batch is not None, "uses_data: fit feeds it training minibatches"
        num = self.config.num_samples
        with torch.no_grad():
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
        smooth = variance_penalty(q_t, y.mask_t, cfg.lambda_var) if cfg.lambda_var > 0 else td_t.new_zeros(())
        return (td_t.sum(1) + smooth).mean(), q_hat_t

    def actor_loss(self, rollout: ERACRollout, log_pi_t: Tensor, q_t: Tensor) -> Tensor:
        """−mean Σ_t [Σ_w π(w|y_<t) Q(y_<t, w) + τ H(π(·|y_<t))] + λ_mle·NLL(y*) (Alg. 3 l. 8, Eq. 20)."""
        cfg, y = self.config, rollout.samples
        gain_t = expected_q(log_pi_t, q_t.detach()) + cfg.tau * entropy_t(log_pi_t)
        loss = -torch.where(y.mask_t, gain_t, torch.zeros_like(gain_t)).sum(1).mean()
        if cfg.lambda_mle > 0:
            loss = loss - cfg.lambda_mle * self.policy.sequence_log_prob(rollout.data).mean()
        return loss

    def loss(self, rollout: ERACRollout) -> tuple[Tensor, dict[str, float]]:
        y, pretraining = rollout.samples, self.pretraining_critic
        if pretraining:
            with torch.no_grad():
                log_pi_t = self.policy.log_dists(y)
        else:
            log_pi_t = self.policy.log_dists(y)
        q_t = self.critic(y, rollout.refs)
        critic, q_hat_t = self.critic_loss(rollout, log_pi_t, q_t)
        stats = {"reward": float(rollout.reward_t.sum(1).mean()), "critic_loss": float(critic.detach()),
                 "entropy": float((entropy_t(log_pi_t.detach()) * y.mask_t).sum(1).mean())}
        if pretraining:
            return critic, stats
        actor = self.actor_loss(rollout, log_pi_t, q_t)
        stats["actor_loss"] = float(actor.detach())
        return critic + actor, stats

    def on_step_end(self, step: int) -> None:
        """Polyak update of the target critic (Alg. 3 l. 11); count steps for the critic-pretraining phase."""
        self.target.update()
        self.steps_done += 1


@register_algorithm("ac")
class AC(ERAC):
    """Actor-critic of Bahdanau et al. (2016) as [VAML/ERAC] runs it (Sec. 6.2, App. B.4): ERAC with τ = 0,
    every other default the same (Table 6)."""

    config: ERAC.Config

    @dataclass(frozen=True, kw_only=True)
    class Config(ERAC.Config):
        tau: float = 0.0
        """τ = 0: no entropy regularization (App. B.4: "the same hyper-parameters … except τ is 0")."""
