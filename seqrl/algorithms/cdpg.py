"""Conditional DPG (Korbak, Elsahar, Kruszewski, Dymetman 2022, "Controlling conditional language models without
catastrophic forgetting"): for every context (prompt) x, the target is p_x(y) = P(x, y)/Z_x with
P(x, y) = a(y|x)·b(x, y), one partition function Z_x per prompt, and

    ∇_θ E_x CE(p_x, π_θ(·|x)) = −E_x E_{y~q(·|x)} [P(x, y) / (Z_x q(y|x))] ∇_θ log π_θ(y|x)

Z_x is estimated per prompt from the step's own samples of that prompt (importance sampling,
Ẑ_x = mean_j P(x, y_j)/q(y_j|x)), so each prompt's samples are weighted against their own normalizer rather than
one pooled over prompts whose Z_x may differ by orders of magnitude. At π(·|x) = p_x every weight is Z_x and the
expected update vanishes: p_x is the fixed point for every prompt (tested by enumeration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..ebm.sampling import LogRatioFn
from ..types import SequenceBatch
from .base import Requirements, register_algorithm
from .dpg import DPGBase, DPGRollout, dpg_loss


def per_prompt_log_z(log_weight: Tensor, per_prompt: int) -> Tensor:
    """[B] log Ẑ_x of each row's prompt: log mean of the P/q of that prompt's ``per_prompt`` rows (prompt-major);
    −inf where every sample of the prompt has P = 0."""
    groups = log_weight.double().view(-1, per_prompt)
    log_z = torch.logsumexp(groups, 1) - math.log(per_prompt)
    return log_z.repeat_interleave(per_prompt)


@register_algorithm("cdpg")
class CDPG(DPGBase):
    """Conditional DPG (Korbak et al., 2022): DPG toward p_x = P(x, ·)/Z_x for every prompt x, Ẑ_x per prompt.

    By default on-policy (q = π_θ), as the paper samples from the policy being trained; ``off_policy=True`` keeps a
    frozen proposal updated by the KL rule ([GDC++] Alg. 1); ``baseline=True`` subtracts Ẑ_x·π/q per prompt (GDC++'s
    baseline, which leaves the expected update unchanged). Needs ``prompts=`` (an offer's prompts)."""

    in_default_bench = False  # the suites' tasks have no prompts
    requires = Requirements(potential=True, data=False, prompts=True)

    @dataclass(frozen=True, kw_only=True)
    class Config(DPGBase.Config):
        off_policy: bool = False
        """Sample from π_θ itself at every step (the paper), or from a frozen proposal q."""
        proposal_update: Literal["never", "valid_ce", "kl"] = "never"
        """With ``off_policy``: when q ← π_θ (``kl``: lower estimated KL(p‖π), [GDC++] Alg. 1)."""
        samples_per_step: int = 256
        """Completions per step, spread evenly over the step's prompts (the paper: several per context)."""

    config: Config

    def __init__(self, policy, config: Config | None = None, *, potential=None, proposal=None,
                 valid: SequenceBatch | None = None, log_ratio: LogRatioFn | None = None,
                 prompts: SequenceBatch | None = None) -> None:
        if prompts is None or prompts.batch_size == 0:
            raise ValueError("cdpg trains π(·|x) for prompts x: pass prompts= (a SequenceBatch of prompt ids)")
        super().__init__(policy, config, potential=potential, proposal=proposal, valid=valid, log_ratio=log_ratio,
                         prompts=prompts)
        assert self.schedule is not None
        if self.schedule.step(0, self.config.samples_per_step).per_prompt < 2:
            raise ValueError(f"cdpg: {self.config.samples_per_step} samples per step over {self.schedule.per_step} "
                             "prompts is one completion per prompt, whose Ẑ_x is its own weight: no signal; draw "
                             "more samples per step or set fewer prompts_per_step")

    def loss(self, rollout: DPGRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """−(1/B) Σ (P/q)/Ẑ_x · log π(y|x), Ẑ_x from the step's samples of each prompt (rows of a prompt whose
        samples all have P = 0 carry no weight)."""
        assert self.schedule is not None
        per_prompt = self.schedule.local_step(self.steps, self.config.samples_per_step).per_prompt
        logp_pi = self.policy.sequence_log_prob(rollout.batch)
        log_z = per_prompt_log_z(rollout.log_weight, per_prompt)
        supported = torch.isfinite(log_z)
        log_weight = torch.where(supported, rollout.log_weight.double(), torch.full_like(log_z, -math.inf))
        log_n = torch.where(supported, log_z, torch.zeros_like(log_z))
        baseline = None
        if self.config.baseline:  # Ẑ_x·π/q ([GDC++] Eq. 15 per prompt); 1 on-policy: A = w/Ẑ_x − 1
            baseline = self._eval_log_prob(rollout.batch, logp_pi) - rollout.log_q
            baseline = torch.where(supported, baseline.double(), torch.full_like(log_z, -math.inf))
        loss, adv = dpg_loss(logp_pi, log_weight.to(rollout.log_weight), log_n if baseline is not None else None,
                             baseline, log_normalizer=log_n)
        return loss, {"log_z_mean": log_z[supported].mean() if bool(supported.any()) else math.nan,
                      "advantage_abs": adv.abs().mean(), "episodes": float(self.episodes)}


__all__ = ["CDPG", "per_prompt_log_z"]
