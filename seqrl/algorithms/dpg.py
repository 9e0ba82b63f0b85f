"""Distributional Policy Gradient: π_θ → p = P/Z for any potential P.

∇_θ CE(p, π_θ) = −(1/Z) E_{x~q} [P(x)/q(x)] ∇_θ log π_θ(x)   ([DPG] Eq. 5 with q = π, Eq. 6)
With the GDC++ baseline ([GDC++] Eq. 13–15) the weight becomes the advantage
A(x) = P(x)/q(x) − Z·π_θ(x)/q(x), which leaves the expectation unchanged (Fact 1, 2).

Three registered points share this module: ``dpg`` (on-policy, q = π_θ at every step),
``dpg_off`` ([DPG] Alg. 1: q ← π_θ only when π_θ beats q in CE on validation) and
``gdcpp`` ([GDC++] Alg. 1: baseline, q ← π_θ when the estimated KL(p‖π_θ) < KL(p‖q)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..distributed import all_reduce_sum, share, world
from ..ebm.base import PotentialError
from ..ebm.sampling import LogRatioFn, ProposalDraw, draw, estimate_divergences, potential_log_ratio
from ..metrics import cross_entropy
from ..prompts import PromptSchedule
from ..registry import plugin_notes
from ..types import SequenceBatch
from ..utils import eval_mode
from .base import Algorithm, AlgorithmConfig, Requirements, register_algorithm


def dpg_loss(logp_pi: Tensor, log_weight: Tensor, log_z: Tensor | float | None = None,
             log_pi_over_q: Tensor | None = None, normalizer: Tensor | float = 1.0,
             reduction: Literal["mean", "none"] = "mean", *,
             log_normalizer: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
    """Surrogate whose gradient is −(1/B) Σ_b A_b ∇ log π_θ(x_b) / N, A = P/q − Z·π_θ/q ([DPG] Eq. 6, [GDC++] Eq. 15).

    The advantages are formed in log space, A/N = exp(log P/q − log N) − exp(log Z + log π/q − log N),
    in float64, so log weights far beyond float32's exp range (≈ 88.7) give finite values whenever
    A/N itself is representable; below that range the result equals the direct formula.

    Args:
        logp_pi: [B] log π_θ(x), differentiable.
        log_weight: [B] log P(x)/q(x) (no gradient).
        log_z: log Z for the GDC++ baseline Z·π_θ/q ([GDC++] Eq. 15); None: no baseline.
        log_pi_over_q: [B] log π_θ(x)/q(x) (no gradient); required with a baseline.
        normalizer: N, divides the advantages. With N = Z the expected update is ∇ CE(p, π) itself;
            with an estimate Ẑ independent of the batch it is (Z/Ẑ)·∇ CE(p, π).
        reduction: ``"mean"`` over the batch, or ``"none"`` for the [B] per-sample surrogates.
        log_normalizer: log N, used instead of ``normalizer`` (for N beyond float range).
    Returns:
        (loss, advantages A/N [B], in the dtype of ``logp_pi``).
    Assumes: x ~ q, or the gradient is biased.
    """
    if logp_pi.dim() != 1 or logp_pi.shape != log_weight.shape:
        raise ValueError(
            f"logp_pi and log_weight must both be [B], got {tuple(logp_pi.shape)}, {tuple(log_weight.shape)}"
        )
    f64: dict[str, Any] = dict(dtype=torch.float64, device=log_weight.device)
    log_n = (torch.as_tensor(log_normalizer, **f64) if log_normalizer is not None
             else torch.as_tensor(normalizer, **f64).log())
    advantage = (log_weight.detach().double() - log_n).exp()
    if log_z is not None:
        if log_pi_over_q is None:
            raise ValueError("the GDC++ baseline needs log π/q")
        advantage = advantage - (torch.as_tensor(log_z, **f64) + log_pi_over_q.detach().double() - log_n).exp()
    advantage = advantage.to(logp_pi.dtype).detach()
    per_sample = -(advantage * logp_pi)
    return (per_sample if reduction == "none" else per_sample.mean()), advantage


@dataclass(frozen=True)
class DPGRollout:
    batch: SequenceBatch
    log_q: Tensor
    log_weight: Tensor
    log_z_before: float | None = None
    """log Ẑ from the weights of earlier batches only (None on the first batch)."""
    before_support: bool = False
    """P = 0 on every sample and on every earlier one: no weight, no Ẑ, no step (a rare pointwise constraint)."""


class DPGBase(Algorithm):
    """Shared by ``dpg``, ``dpg_off`` and ``gdcpp`` (only their configs differ) and ``fdpg`` (its own loss)."""

    requires = Requirements(potential=True, data=False)
    uses_data = False
    resumable = ("steps", "episodes", "proposal_updates", "draws_without_support", "_proposal_score")
    z_sum: Tensor  # buffers (register_buffer in __init__), declared so that they type as tensors
    z_count: Tensor

    @dataclass(frozen=True, kw_only=True)
    class Config(AlgorithmConfig):
        samples_per_step: int = 500
        """Episodes x ~ q per update ([DPG] code: batch 500): the algorithm's one batch size."""
        off_policy: bool = True
        """Sample from a frozen proposal q (True) or from π_θ itself at every step."""
        baseline: bool = False
        """Subtract Z·π_θ/q ([GDC++] Eq. 15)."""
        proposal_update: Literal["never", "valid_ce", "kl"] = "valid_ce"
        """When q ← π_θ: on better validation CE ([DPG] Alg. 1) or lower estimated KL(p‖π) ([GDC++] Alg. 1)."""
        check_every: int = 100
        """Steps between the checks that may swap q ← π_θ (the algorithm's own schedule, not the loop's logging:
        suites set it to their evaluation interval)."""
        normalize_by_z: bool = True
        """Divide advantages by Ẑ, the running mean of the importance weights P/q, so that the
        update's scale does not depend on how P is normalized (the paper folds 1/Z into the lr).
        It is not ∇ CE(p, π) itself: it estimates (Z/Ẑ)·∇ CE, and with ``z_from="all"`` Ẑ also
        holds the current batch, which couples them (≈10% off while Ẑ is young). The GDC++
        baseline Z·π/q uses the same Ẑ."""
        z_from: Literal["all", "earlier"] = "all"
        """Which weights Ẑ averages: every batch so far, the current one included (self-normalizing:
        one rare high-weight string cannot make the step larger than the batch), or only the earlier
        batches (independent of the batch it scales, so the update is (Z/Ẑ)·∇CE without coupling; but
        while Ẑ is young and small, one high-weight string gives an unbounded step: on the quick
        GAM grid at |D| = 500, dpg_off reached CE(T, π) 17.06 against 15.04, and unclipped gdcpp
        did not move from r)."""
        kl_samples: int = 2000
        """Samples of q drawn at each 'kl' check to estimate KL(p‖π) and KL(p‖q) (counted as episodes)."""
        max_draws_without_support: int = 20
        """Batches in a row, from the start, with P = 0 on every sample before the run stops with an error
        (a potential that is -inf everywhere); until then such a batch is no step (a rare pointwise
        constraint, [GDC++] Sec. 4.1, may need a few batches before its first sample)."""
        prompts_per_step: int | None = None
        """With prompts: how many a step samples from (None: all of them, every step, while each gets at least 4
        completions; else ``samples_per_step // 4``); the step's ``samples_per_step`` completions are spread
        evenly over them (:mod:`seqrl.prompts`)."""

        def check(self) -> None:
            super().check()
            self.positive("samples_per_step", "check_every", "kl_samples", "max_draws_without_support",
                          "prompts_per_step")

    config: Config

    def __init__(self, policy, config: Config | None = None, *, potential=None, proposal=None,
                 valid: SequenceBatch | None = None, log_ratio: LogRatioFn | None = None,
                 prompts: SequenceBatch | None = None) -> None:
        super().__init__(policy, config)
        self.schedule = (PromptSchedule(prompts, self.config.prompts_per_step, self.config.samples_per_step)
                         if prompts is not None else None)
        if potential is None or not hasattr(potential, "log_potential"):
            raise TypeError(f"{self.name} needs potential=<object with log_potential(batch)>")
        object.__setattr__(self, "potential", potential)  # not a submodule: not trained, saved or moved here
        if self.config.proposal_update == "valid_ce" and self.config.off_policy and valid is None:
            raise ValueError(f"{self.name}: proposal_update='valid_ce' needs valid=<validation batch>")
        self.valid = valid
        self._log_ratio = log_ratio or potential_log_ratio(potential, require_support=False)
        self.proposal = None
        if self.config.off_policy:
            self.proposal = (proposal if proposal is not None else policy).frozen_copy()
        self.register_buffer("z_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("z_count", torch.zeros((), dtype=torch.float64))
        self.episodes = 0
        self.proposal_updates = 0
        self.draws_without_support = 0
        self._proposal_score: float | None = None
        self.policy_optimizer()

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "proposal_updates": float(self.proposal_updates)}

    # --- helpers ---------------------------------------------------------------------
    @property
    def sampler(self):
        return self.proposal if self.proposal is not None else self.policy

    def log_z(self) -> float:
        """Running estimate log Ẑ = log mean of every importance weight P/q seen so far."""
        return math.log(float(self.z_sum / self.z_count)) if float(self.z_sum) > 0 else 0.0

    # --- the update ------------------------------------------------------------------
    def update(self, batch: SequenceBatch | None = None) -> dict[str, Tensor | float]:
        """x ~ q, Ẑ updated with P/q, one step on −(A/Ẑ)·log π(x) (Eq. 6, with the GDC++ baseline when set), then,
        every ``check_every`` steps, q ← π_θ if π_θ is better by the configured rule."""
        rollout = self.collect()
        if rollout.before_support:  # P = 0 on every sample so far: no weight, no step (a rare constraint)
            self.steps += 1
            return {"episodes": float(self.episodes),
                    "draws_without_support": float(self.draws_without_support)}
        loss, metrics = self.loss(rollout)
        metrics = {**metrics, **self.optimize(loss)}
        if self.steps % self.config.check_every == 0:
            self.maybe_update_proposal()
        return metrics

    def draw(self, samples: int, log_ratio: LogRatioFn) -> ProposalDraw:
        """``samples`` draws of q, spread over the step's prompts when there are prompts (prompt-major); with
        several processes, this rank's share of them."""
        if self.schedule is None:
            return draw(self.sampler, share(samples, f"{self.name}: samples per step"), log_ratio)
        step = self.schedule.local_step(self.steps, samples)
        return draw(self.sampler, step.per_prompt, log_ratio, context=step.prompts)

    def collect(self, batch: SequenceBatch | None = None) -> DPGRollout:
        """A batch of q's samples with log q and log P/q; Ẑ's running sums and the episode count updated."""
        d = self.draw(self.config.samples_per_step, self._log_ratio)
        drawn = d.log_ratio.numel() * world().size  # the global batch: every rank draws an equal share
        self.episodes += drawn
        # Ẑ's sums are over the global batch (one all-reduce), so every rank holds the same Ẑ.
        batch_sums = all_reduce_sum(torch.stack([d.log_ratio.double().exp().sum(),
                                                 torch.isfinite(d.log_ratio).sum().double()]))
        if float(batch_sums[1]) == 0 and float(self.z_sum) == 0:
            self.draws_without_support += 1
            if self.draws_without_support >= self.config.max_draws_without_support:
                raise PotentialError(
                    f"the potential is zero (log P = -inf) on every one of the {self.draws_without_support} × "
                    f"{drawn} samples of the proposal drawn so far: no learning signal "
                    "(is P -inf everywhere, or its support too rare for max_draws_without_support?)"
                )
            self.z_count += drawn  # their zero weights belong to Ẑ's mean
            return DPGRollout(d.batch, d.log_q, d.log_ratio, None, before_support=True)
        log_z_before = self.log_z() if float(self.z_count) > 0 and self.config.z_from == "earlier" else None
        self.z_sum += batch_sums[0].to(self.z_sum)
        if not bool(torch.isfinite(self.z_sum)):
            raise PotentialError(f"{self.name}: the running estimate Ẑ (the mean of P/q) overflowed: the largest "
                                 f"log P/q of the batch is {float(d.log_ratio.max()):.4g}, beyond float64's e^709"
                                 f"{plugin_notes(self)}; rescale the potential (log P by a constant)")
        self.z_count += drawn
        return DPGRollout(d.batch, d.log_q, d.log_ratio, log_z_before)

    def loss(self, rollout: DPGRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """The surrogate of :func:`dpg_loss` on the rollout, and its metrics."""
        logp_pi = self.policy.sequence_log_prob(rollout.batch)
        log_z = self.log_z() if rollout.log_z_before is None else rollout.log_z_before
        log_pi_over_q = None
        if self.config.baseline:
            log_pi_over_q = self._eval_log_prob(rollout.batch, logp_pi) - rollout.log_q
        loss, adv = dpg_loss(
            logp_pi,
            rollout.log_weight,
            log_z if self.config.baseline else None,
            log_pi_over_q,
            log_normalizer=log_z if self.config.normalize_by_z else 0.0,
        )
        return loss, {"log_z": log_z, "advantage_abs": adv.abs().mean(),
                      "episodes": float(self.episodes)}

    @torch.no_grad()
    def _eval_log_prob(self, batch: SequenceBatch, logp_train: Tensor) -> Tensor:
        """log π_θ(x) of π as a distribution (eval mode). With dropout active, the training
        pass scores a random sub-network, whose π(x)/q(x) would make the baseline Z·π/q noisy
        and biased; without dropout the training pass already is that distribution."""
        if not self.policy.training or not any(
            isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.policy.modules()
        ):
            return logp_train.detach()
        with eval_mode(self.policy):
            return self.policy.sequence_log_prob(batch)

    # --- proposal updates ------------------------------------------------------------
    @torch.no_grad()
    def estimate_kl(self, *models) -> list[float]:
        """KL(p‖m) for each model m by importance sampling from the current proposal q (which the running Ẑ
        also comes from), every model scored on the same samples of q with the same Ẑ: the difference of
        two scores, mean_q (p/q)·log(m₂/m₁), then has the sign of the true difference whatever Ẑ's error.
        Its ``kl_samples`` draws count as episodes."""
        d = self.draw(self.config.kl_samples, potential_log_ratio(self.potential, require_support=False))
        self.episodes += d.log_ratio.numel() * world().size
        scores = []
        for model in models:
            with eval_mode(model):
                log_model = model.sequence_log_prob(d.batch)
            scores.append(estimate_divergences(d.log_ratio + d.log_q, log_model, self.log_z(), d.log_q)["kl_p_pi"])
        # each rank's estimate is a mean over its equal share: their mean is the global batch's
        return (all_reduce_sum(torch.tensor(scores, dtype=torch.float64)) / world().size).tolist()

    def maybe_update_proposal(self) -> None:
        """q ← π_θ when π_θ is better: in validation CE ([DPG] Alg. 1) or in the estimated KL(p‖·) ([GDC++] Alg. 1)."""
        if self.proposal is None or self.config.proposal_update == "never":
            return
        if self.config.proposal_update == "valid_ce":
            assert self.valid is not None
            if self._proposal_score is None:
                self._proposal_score = cross_entropy(self.proposal, self.valid)
            score = cross_entropy(self.policy, self.valid)
        else:
            # Rescored every time, on one draw: a score of q cached from an earlier Ẑ is not comparable (before the
            # first sample Ẑ is undefined, and log Ẑ = 0 there made KL(p‖q) ≈ 0 on a pointwise task, so q never moved).
            if float(self.z_sum) == 0:
                return
            score, self._proposal_score = self.estimate_kl(self.policy, self.proposal)
        if score < self._proposal_score:
            self.proposal.load_weights_from(self.policy)
            self._proposal_score = score
            self.proposal_updates += 1


@register_algorithm("dpg")
class DPG(DPGBase):
    """On-policy DPG ([DPG] Eq. 5): q = π_θ at every step.

    Not in the default benchmark rows: [DPG] Sec. 4 reports that on-policy DPG converges poorly and
    reports off-policy DPG in Table 1 (``seqrl bench gam --algos dpg`` runs it)."""

    in_default_bench = False

    @dataclass(frozen=True, kw_only=True)
    class Config(DPGBase.Config):
        off_policy: bool = False
        proposal_update: Literal["never", "valid_ce", "kl"] = "never"


@register_algorithm("dpg_off")
class DPGOff(DPGBase):
    """Off-policy DPG ([DPG] Alg. 1): q ← π_θ when π_θ beats q in validation CE."""

    Config = DPGBase.Config


@register_algorithm("gdcpp")
class GDCPP(DPGBase):
    """KL-adaptive DPG with baseline ([GDC++] Alg. 1): A = P/q − Z·π_θ/q.

    It trains without gradient clipping by default, wherever it is built (``seqrl train``, the suites, the API):
    clipping rescales the rare steps whose batch holds a high-weight string down to the size of the steps that
    carry only the baseline's zero-mean noise, and GDC++ then does not learn at |D| = 500 (docs/benchmarks.md).
    """

    @dataclass(frozen=True, kw_only=True)
    class Config(DPGBase.Config):
        baseline: bool = True
        proposal_update: Literal["never", "valid_ce", "kl"] = "kl"
        clip_grad_norm: float | None = None
        """No clipping (see the class docstring: clipping undoes the baseline's effect at |D| = 500)."""
