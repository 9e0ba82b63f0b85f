"""KL-control (Ziegler et al., 2019; [GDC++] Eq. 2, Theorem 1): maximize E_π[r(x) − β log π(x)/a(x)].

∇_θ E_π R^z_θ = E_π[(R^z_θ(x) − b) ∇_θ log π_θ(x)], R^z_θ = r − β log π_θ/a ([GDC++] Eq. 2, 8): only the
PG term, because the RG term −β E_π ∇ log π_θ is 0 ([GDC++] footnote 3). The maximizer over all
distributions is p_z ∝ a·exp(r/β) ([GDC++] Eq. 9, Theorem 1): E_π R^z = β (log Z − KL(π‖p_z)) (Eq. 10), so
KL-control is reverse-KL distribution matching toward an implicit EBM, which :meth:`KLControl.implied_potential`
returns for DPG to train toward as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..distributed import all_reduce_sum, share, world
from ..ebm.base import base_log_prob
from ..policies.base import AutoregressivePolicy
from ..prompts import PromptSchedule
from ..rewards.base import compute_reward
from ..types import SequenceBatch
from ..utils import eval_mode
from .base import Algorithm, AlgorithmConfig, Requirements, register_algorithm, resolve_reward
from .reinforce import leave_one_out_mean


def penalized_reward(logp: Tensor, reward: Tensor, log_base: Tensor, beta: float) -> Tensor:
    """[B] R^z = r − β log π/a ([GDC++] Eq. 2), detached: the PG term's reward at the current θ."""
    if logp.dim() != 1 or logp.shape != reward.shape or logp.shape != log_base.shape:
        raise ValueError(f"logp, reward and log_base must all be [B], got {tuple(logp.shape)}, "
                         f"{tuple(reward.shape)}, {tuple(log_base.shape)}")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"β must be a finite number > 0, got {beta}")
    if bool(logp.isnan().any() | reward.isnan().any() | log_base.isnan().any()):
        raise ValueError("kl_control: NaN in log π, r or log a")
    return (reward - beta * (logp.detach() - log_base)).detach()


def kl_control_loss(logp: Tensor, reward: Tensor, log_base: Tensor, beta: float,
                    baseline: Tensor | float | None = None,
                    reduction: Literal["mean", "none"] = "mean") -> tuple[Tensor, Tensor]:
    """Surrogate −(1/B) Σ_b (R^z_b − b_b) log π(x_b), R^z = r − β log π/a ([GDC++] Eq. 2; PG term of Eq. 8).

    Args:
        logp: [B] log π_θ(x), differentiable. reward: [B] r(x). log_base: [B] log a(x) (no gradient).
        beta: β > 0, the KL weight.
        baseline: b, a scalar or [B] (no gradient); None: no baseline.
        reduction: ``"mean"`` over the batch, or ``"none"`` for the [B] per-sample surrogates.
    Returns:
        (loss, R^z [B], detached).
    Assumes: x ~ π_θ, and b_b independent of x_b, or the gradient is biased.
    """
    kl_reward = penalized_reward(logp, reward, log_base, beta)
    advantage = kl_reward - (baseline.detach() if isinstance(baseline, Tensor) else (baseline or 0.0))
    per_sample = -(advantage * logp)
    return (per_sample if reduction == "none" else per_sample.mean()), kl_reward


def kl_estimates(logp: Tensor, log_base: Tensor) -> dict[str, Tensor | float]:
    """KL(π‖a) from x ~ π: k1 = mean log π/a (unbiased) and k3 = mean (a/π − 1) − log a/π
    (unbiased, ≥ 0 per sample, lower variance when π ≈ a; Schulman, "Approximating KL divergence", 2020);
    0-d float64 tensors."""
    log_ratio = (log_base - logp).detach().double()  # log a/π
    return {"kl_k1": (-log_ratio).mean(), "kl_k3": (log_ratio.exp() - 1 - log_ratio).mean()}


class KLControlPotential:
    """The implicit EBM of KL-control, log P_z(x) = log a(x) + r(x)/β ([GDC++] Eq. 9).

    A :class:`~seqrl.ebm.base.Potential`; :meth:`log_ratio_to_base` (= r/β) serves proposals equal to a
    (:func:`~seqrl.ebm.sampling.base_log_ratio`) without a second pass of a.
    """

    def __init__(self, base, reward, beta: float) -> None:
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"β must be a finite number > 0, got {beta}")
        self.base, self.reward, self.beta = base, reward, float(beta)

    def log_ratio_to_base(self, batch: SequenceBatch) -> Tensor:
        """[B] log P_z(x) − log a(x) = r(x)/β."""
        return compute_reward(self.reward, batch, None) / self.beta

    @torch.no_grad()
    def log_potential(self, batch: SequenceBatch) -> Tensor:
        """[B] log a(x) + r(x)/β."""
        log_a = base_log_prob(self.base, batch)
        return log_a + self.log_ratio_to_base(batch).to(log_a)


@dataclass(frozen=True)
class KLControlRollout:
    batch: SequenceBatch
    reward: Tensor
    log_base: Tensor
    group: int = 1
    """Completions per prompt (the leave-one-out baseline's group); 1 without prompts (the whole batch)."""


@register_algorithm("kl_control")
class KLControl(Algorithm):
    """KL-control / Ziegler ([GDC++] Eq. 2): on-policy PG on R^z = r − β log π/a, a frozen; target p_z ∝ a·e^{r/β}.

    ``base`` (a) defaults to a frozen copy of the policy at construction (π starts at a, [GDC++] Alg. 1 line 1),
    at π's temperature but without top-k/top-p truncation (a must cover wherever π goes).
    Logged per step: ``reward`` (mean r), ``kl_reward`` (mean R^z), ``beta``, and KL(π‖a) as ``kl_k1`` and
    ``kl_k3`` (:func:`kl_estimates`): values only, outside the gradient, which is the exact score-function
    gradient of E_π R^z. With ``target_kl``, β follows Ziegler's controller after every step.
    """

    requires = Requirements(reward=True, data=False)
    uses_data = False
    in_default_bench = False  # reference-free rewards only: ``seqrl bench control`` runs it, not seq2seq's BLEU tasks
    resumable = ("steps", "beta", "episodes")

    @dataclass(frozen=True, kw_only=True)
    class Config(AlgorithmConfig):
        reward: str = "motif"
        """Registered reward r(x); it must score a sequence alone (no references: KL-control samples its own)."""
        beta: float = 0.1
        """β, the KL weight (the initial one with ``target_kl``). 0.1 makes a 0/1 reward, a pointwise constraint
        φ, weigh e^{1/β} ≈ 2.2·10⁴ in p_z ∝ a·e^{φ/β}: a constraint that 1% of a meets holds on 99.5% of p_z, so
        p_z is close to the GDC target a·1[φ = 1] the [GDC++] pointwise comparison trains toward, while keeping
        full support."""
        target_kl: float | None = None
        """Adapt β toward this KL(π‖a) in nats (Ziegler et al., 2019, Sec. 2.2); None keeps β fixed."""
        kl_gain: float = 0.1
        """K_β of Ziegler's proportional controller: β ← β·(1 + K_β·e), e = clip(KL/target − 1, ±``kl_error_clip``)."""
        kl_error_clip: float = 0.2
        """Clip of the controller's proportional error e (Ziegler et al.: 0.2)."""
        samples_per_step: int = 500
        """Episodes x ~ π per update (the DPG family's batch of 500, so that rows compare per sample)."""
        baseline: bool = True
        """Subtract b, the leave-one-out mean of the other samples' R^z (the batch mean without the sample
        itself, so that b is independent of x and the estimate stays unbiased); with prompts, of the other
        completions of the same prompt (RLOO)."""
        prompts_per_step: int | None = None
        """With prompts: how many a step samples from (None: all of them, every step, while each gets at least 4
        completions; else ``samples_per_step // 4``); the step's ``samples_per_step`` completions are spread
        evenly over them (:mod:`seqrl.prompts`)."""

        def check(self) -> None:
            super().check()
            if not 0 < self.beta <= 1e6:
                raise ValueError(f"kl_control: beta must be in (0, 1e6] (beyond, β·log π/a overflows the reward's "
                                 f"scale), got {self.beta}")
            if self.target_kl is not None and not (math.isfinite(self.target_kl) and self.target_kl > 0):
                raise ValueError(f"kl_control: target_kl must be > 0 or None, got {self.target_kl}")
            if not self.kl_gain >= 0 or not self.kl_error_clip >= 0:
                raise ValueError(f"kl_control: kl_gain and kl_error_clip must be ≥ 0, got {self.kl_gain}, "
                                 f"{self.kl_error_clip}")
            self.positive("samples_per_step", "prompts_per_step")

    config: Config

    def __init__(self, policy: AutoregressivePolicy, config: Config | None = None, *, reward=None,
                 base: AutoregressivePolicy | None = None, prompts: SequenceBatch | None = None) -> None:
        super().__init__(policy, config)
        self.schedule = (PromptSchedule(prompts, self.config.prompts_per_step, self.config.samples_per_step)
                         if prompts is not None else None)
        self.reward = resolve_reward(reward, self.config.reward, policy.vocab)
        if getattr(self.reward, "needs_reference", True):
            raise ValueError(f"kl_control samples its own sequences, which have no references: it needs a reward "
                             f"that scores a sequence alone (needs_reference=False, e.g. 'motif'), got "
                             f"{getattr(self.reward, 'name', self.reward)!r}")
        self.base: AutoregressivePolicy = (base if base is not None else policy).frozen_copy()
        # a keeps π's temperature (TRL scores its reference so too) but never truncates: π's support moves as it
        # trains, and a token outside a's own top-k/top-p would make log a = −inf and R^z undefined
        self.base.set_sampling(top_k=0, top_p=1.0)
        self.base.eval()
        self.beta = float(self.config.beta)
        self.episodes = 0
        self.policy_optimizer()

    def train(self, mode: bool = True) -> KLControl:
        super().train(mode)
        self.base.eval()  # a is a distribution: never dropout
        return self

    def implied_potential(self) -> KLControlPotential:
        """p_z ∝ a·exp(r/β) at the current β ([GDC++] Theorem 1), as a potential DPG can train toward."""
        return KLControlPotential(self.base, self.reward, self.beta)

    def update(self, batch: SequenceBatch | None = None) -> dict[str, Tensor | float]:
        """x ~ π (as a distribution), one step on −(R^z − b)·log π(x), then Ziegler's β controller."""
        loss, metrics = self.loss(self.collect())
        metrics.update(self.optimize(loss))
        if self.config.target_kl is not None:  # the global batch's k1 (each rank's is a mean over an equal share)
            kl = torch.as_tensor(metrics["kl_k1"], dtype=torch.float64)
            self.adapt_beta(float(all_reduce_sum(kl)) / world().size)
        return metrics

    @torch.no_grad()
    def collect(self, batch: SequenceBatch | None = None) -> KLControlRollout:
        """``samples_per_step`` x ~ π (completions of the step's prompts, prompt-major, when there are prompts),
        their rewards r(x) and log a(x)."""
        group = 1
        with eval_mode(self.policy):
            if self.schedule is None:
                samples = self.policy.sample(share(self.config.samples_per_step, "kl_control: samples per step")).batch
            else:
                step = self.schedule.local_step(self.steps, self.config.samples_per_step)
                samples = self.policy.sample(step.per_prompt, step.prompts).batch
                group = step.per_prompt
        reward = compute_reward(self.reward, samples, None)
        self.episodes += samples.batch_size * world().size
        return KLControlRollout(samples, reward, self.base.sequence_log_prob(samples), group)

    def loss(self, rollout: KLControlRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """The PG surrogate of :func:`kl_control_loss` with the leave-one-out baseline, and the logged values."""
        logp = self.policy.sequence_log_prob(rollout.batch)
        kl_reward = penalized_reward(logp, rollout.reward, rollout.log_base, self.beta)
        baseline = leave_one_out_mean(kl_reward, rollout.group) if self.config.baseline else None
        loss, _ = kl_control_loss(logp, rollout.reward, rollout.log_base, self.beta, baseline)
        return loss, {"reward": rollout.reward.mean(), "kl_reward": kl_reward.mean(), "beta": self.beta,
                      **kl_estimates(logp, rollout.log_base), "episodes": float(self.episodes)}

    def adapt_beta(self, kl: float) -> None:
        """Ziegler's proportional controller: β ← β·(1 + K_β·clip(KL/KL_target − 1, ±0.2)), KL the batch's k1."""
        c = self.config
        if c.target_kl is None:
            return
        error = min(max(kl / c.target_kl - 1.0, -c.kl_error_clip), c.kl_error_clip)
        self.beta *= 1.0 + c.kl_gain * error

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "beta": self.beta}
