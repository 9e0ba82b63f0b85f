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
from .base import Algorithm, DataConfig, Offer, Requirements, register_algorithm


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
    """Predict y*_t after prefixes that mix reference tokens (probability ε_i) with the model's own samples."""

    requires = Requirements(from_scratch=True)

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        k: float = 500.0
        """Decay speed ([ERPO] C.2: 500 for translation)."""

        def check(self) -> None:
            super().check()
            if not self.k >= 1:
                raise ValueError(f"k must be ≥ 1, got {self.k}")

    config: Config

    @classmethod
    def defaults_for(cls, policy, offer: Offer, given: dict[str, Any]) -> dict[str, Any]:
        """From scratch the paper's k = 500 ([ERPO] C.2); fine-tuning within a known budget: ε reaches 1/2 at a
        quarter of it, so that the model's own prefixes weigh in before the run ends."""
        if offer.from_scratch or (offer.steps is None and offer.epochs is None):
            return {}
        return {"k": max(1.0, offer.budget(given.get("batch_size", cls.Config.batch_size)) / 4)}

    def __init__(self, policy, config: Config | None = None) -> None:
        super().__init__(policy, config)
        self.policy_optimizer()

    @property
    def epsilon(self) -> float:
        """ε_i after i = ``steps`` updates."""
        return inverse_sigmoid(self.steps, self.config.k)

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """Mix the prefixes with probability ε of the reference token, then one step on −log π(y*_t | mixed)."""
        assert batch is not None, "scheduled sampling learns from references: fit feeds it minibatches"
        loss, metrics = self.loss(self.collect(batch))
        return {**metrics, **self.optimize(loss)}

    def loss(self, rollout: ScheduledRollout) -> tuple[Tensor, dict[str, Tensor | float]]:
        """−Σ_t log π(y*_t | mixed prefix), per sequence, averaged."""
        log_dists = self.policy.log_dists(rollout.inputs)  # conditioned on the mixed prefixes
        targets = rollout.targets
        logp_t = log_dists.gather(2, targets.tokens.unsqueeze(2)).squeeze(2)
        return -masked_sum(logp_t, targets.mask_t).mean(), {"epsilon": self.epsilon}

    @torch.no_grad()
    def collect(self, batch: SequenceBatch) -> ScheduledRollout:
        """The references' lengths, each token the reference's with probability ε, else the model's sample."""
        epsilon = self.epsilon
        refs = batch.with_context(None)
        eos = self.policy.vocab.eos

        def use_reference(info) -> Tensor:
            coin = torch.rand(info.proposed.shape, device=info.proposed.device) < epsilon
            last = refs.lengths.to(info.proposed.device) - 1 == info.t
            # Keep the reference's length: its EOS at the end, no model EOS before it.
            return coin | last | (info.proposed == eos)

        samples = samples_per_reference(self.policy, batch, 1, override=reference_override(refs, use_reference))
        width = refs.tokens.shape[1]
        return ScheduledRollout(SequenceBatch(samples.tokens[:, :width], refs.lengths, batch.context), batch)
