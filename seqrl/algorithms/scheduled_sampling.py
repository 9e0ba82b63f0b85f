"""Scheduled sampling (Bengio et al., 2015; [ERPO] Sec. 5, C.2): predict y*_t from a prefix whose
tokens are the reference's with probability ε_i and the model's own samples otherwise, with the
inverse-sigmoid decay ε_i = k / (k + exp(i/k)) over optimizer steps i.

(ε_i is the probability of feeding the ground truth, as in Bengio et al.; [ERPO] C.2 words it as
"the probability of sampling from model", but with this decay that would start from the model.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..proposals import reference_override, samples_per_reference
from ..types import SequenceBatch
from ..utils import masked_sum
from .base import Algorithm, Requirements, RunContext, register_algorithm


def inverse_sigmoid(step: int, k: float) -> float:
    """ε_i = k / (k + exp(i / k)), k ≥ 1."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    return k / (k + math.exp(min(step / k, 700.0)))


@dataclass(frozen=True)
class ScheduledRollout:
    inputs: SequenceBatch
    """Mixed prefixes (same lengths as the references)."""
    targets: SequenceBatch


@register_algorithm("scheduled_sampling")
class ScheduledSampling(Algorithm):
    requires = Requirements(from_scratch=True)

    @classmethod
    def bench_kwargs(cls, context: RunContext) -> dict[str, Any]:
        """From scratch the paper's k = 500 ([ERPO] C.2); fine-tuning: ε reaches 1/2 within the budget."""
        k = 500.0 if context.from_scratch else max(1.0, context.budget_steps / 4)
        return {**super().bench_kwargs(context), "k": k}

    config: Config  # set by Algorithm.__init__

    @dataclass(frozen=True, kw_only=True)
    class Config:
        k: float = 500.0
        """Decay speed ([ERPO] C.2: 500 for translation)."""

    def __init__(self, policy, config=None) -> None:
        super().__init__(policy, config)
        self.step = 0

    @property
    def epsilon(self) -> float:
        return inverse_sigmoid(self.step, self.config.k)

    def collect(self, batch: SequenceBatch | None) -> ScheduledRollout:
        assert batch is not None, "uses_data: fit feeds it training minibatches"
        refs = batch.with_context(None)
        eps = self.epsilon
        eos = self.policy.vocab.eos

        def use_reference(info) -> Tensor:
            coin = torch.rand(info.proposed.shape, device=info.proposed.device) < eps
            t = info.t
            last = refs.lengths.to(info.proposed.device) - 1 == t
            # Keep the reference's length: its EOS at the end, no model EOS before it.
            return coin | last | (info.proposed == eos)

        with torch.no_grad():
            hook = reference_override(refs, use_reference)
            samples = samples_per_reference(self.policy, batch, 1, override=hook)
        width = refs.tokens.shape[1]
        mixed = SequenceBatch(samples.tokens[:, :width], refs.lengths, batch.context)
        return ScheduledRollout(mixed, batch)

    def loss(self, rollout: ScheduledRollout) -> tuple[Tensor, dict[str, float]]:
        log_dists = self.policy.log_dists(rollout.inputs)  # conditioned on the mixed prefixes
        targets = rollout.targets.tokens
        logp_t = log_dists.gather(2, targets.unsqueeze(2)).squeeze(2)
        loss = -masked_sum(logp_t, rollout.targets.mask_t).mean()
        return loss, {"epsilon": self.epsilon}

    def on_step_end(self, step: int) -> None:
        self.step = step
