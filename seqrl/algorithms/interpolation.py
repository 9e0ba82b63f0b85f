"""The ERPO interpolation algorithm ([ERPO] Sec. 4, App. B Alg. 1, C.2).

Each token of a training sequence is drawn, by a token-level spike-and-slab z ~ (λ1, λ2, λ3),
from p_θ^c (z = 1), from exp(c·ΔR_comm(· | y_<t, y*)) (z = 2), or is the reference token
(z = 3, R_δ); θ then maximizes log p_θ(y). λ starts at (0.04, 0, 0.96); every time the
validation reward decreases, λ1 (once) or λ2 (four times), periodically, grows by 0.06 while λ3
shrinks by 0.06, and θ is not updated: the parameters return to the previous evaluation's.

"Decreases" is read as the ERPO authors' reference code (Texar, examples/seq2seq_exposure_bias)
does: against the previous evaluation under the current λ, not the best so far, and the first
evaluation after an annealing is always accepted. Compared with the best so far, a run from a
random initialization, whose early validation BLEU is near 0 and noisy, reverted θ and annealed λ
on almost every evaluation and never learned (toy task: test BLEU 0.0 and 2.4; docs/benchmarks.md).
Evaluations that are too frequent do the same with either reading: on 300 training pairs,
validating every epoch (10 steps) never learned, every 50 steps did (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..metrics import reward_score
from ..proposals import MixtureRecorder, samples_per_reference
from ..types import SequenceBatch
from ..utils import masked_sum
from .base import Algorithm, DataConfig, Offer, Requirements, register_algorithm, resolve_reward


def anneal(weights: tuple[float, float, float], drops: int, step: float = 0.06) -> tuple[float, float, float]:
    """λ after the ``drops``-th validation drop (1-based): λ1 on drops 1, 6, 11…, λ2 on the others."""
    l1, l2, l3 = weights
    if l3 <= 1e-9:
        return weights
    step = min(step, l3)
    if (drops - 1) % 5 == 0:
        l1 += step
    else:
        l2 += step
    return (l1, l2, max(0.0, l3 - step))


@register_algorithm("interpolation")
class Interpolation(Algorithm):
    """MLE on spike-and-slab sequences whose weights λ anneal toward the model and the reward, each time the
    validation reward drops (then θ returns to the previous check's)."""

    requires = Requirements(reward=True, from_scratch=True, validation=True)
    resumable = ("steps", "weights", "drops", "_previous", "_snapshot")

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        reward: str = "bleu"
        """R_comm, the common reward (any registered reward)."""
        initial_weights: tuple[float, float, float] = (0.04, 0.0, 0.96)
        """(λ1, λ2, λ3) at the start ([ERPO] C.2)."""
        anneal_step: float = 0.06
        sharpness: float = 1.0
        """c, the scale inside every component's exponent."""
        check_every: int = 50
        """Steps between its checks of the validation reward (the builder sets one epoch when the run offers data;
        checking more often lets BLEU's noise, not its trend, anneal λ: docs/benchmarks.md)."""
        check_at_start: bool = False
        """Also score the starting policy (step 0) as the first check's reference; the builder sets it when the run
        fine-tunes a trained policy, whose starting reward is a meaningful baseline."""

        def check(self) -> None:
            super().check()
            w = self.initial_weights
            if min(w) < 0 or abs(sum(w) - 1) > 1e-6:
                raise ValueError(f"initial_weights must be a distribution over 3 components, got {w}")
            self.positive("anneal_step", "sharpness", "check_every")

    config: Config

    @classmethod
    def defaults_for(cls, policy, offer: Offer, given: dict[str, Any]) -> dict[str, Any]:
        if offer.train is None:
            return {}
        return {"check_every": offer.steps_per_epoch(given.get("batch_size", cls.Config.batch_size)),
                "check_at_start": not offer.from_scratch}

    def __init__(self, policy, config: Config | None = None, *, reward=None,
                 valid: SequenceBatch | None = None) -> None:
        super().__init__(policy, config)
        if valid is None or valid.batch_size == 0:
            raise ValueError("interpolation anneals on the validation reward: pass valid=<validation batch>")
        w = self.config.initial_weights
        self.weights = (float(w[0]), float(w[1]), float(w[2]))
        self.reward = resolve_reward(reward, self.config.reward, policy.vocab)
        self.valid = valid
        self.drops = 0
        self._previous: float | None = None
        """The last accepted check's value under the current λ (None right after annealing)."""
        self._snapshot: dict[str, Tensor] | None = None
        self.policy_optimizer()

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """Draw each token from the spike-and-slab mixture, one MLE step on the result, then the check."""
        assert batch is not None, "interpolation learns from references: fit feeds it minibatches"
        if self.steps == 0 and self.config.check_at_start:
            self.check_validation()
        loss, metrics = self.loss(self.collect(batch))
        metrics.update(self.optimize(loss))
        if self.steps % self.config.check_every == 0:
            self.check_validation()
        return metrics

    @torch.no_grad()
    def collect(self, batch: SequenceBatch) -> SequenceBatch:
        """One sequence per reference, each token from the component z ~ (λ1, λ2, λ3) draws."""
        rec = MixtureRecorder(self.reward, batch.with_context(None), self.policy.vocab, self.policy.max_len,
                              self.weights, sharpness=self.config.sharpness)
        return samples_per_reference(self.policy, batch, 1, override=rec).batch

    def loss(self, samples: SequenceBatch) -> tuple[Tensor, dict[str, Tensor | float]]:
        """−log p_θ(y) of the drawn sequences (the M-step), averaged."""
        l1, l2, l3 = self.weights
        loss = -masked_sum(self.policy.token_log_probs(samples), samples.mask_t).mean()
        return loss, {"lambda1": l1, "lambda2": l2, "lambda3": l3}

    def check_validation(self, value: float | None = None) -> None:
        """A drop of the validation reward (``value``, by default the reward of greedy decodes on ``valid``) below
        the previous check's under the current λ anneals λ and returns θ to that check's ("we would not update
        θ"); the first check after an annealing only records."""
        value = reward_score(self.reward, self.policy, self.valid) if value is None else value
        if self._previous is not None and value < self._previous and self._snapshot is not None:
            self.drops += 1
            self.weights = anneal(self.weights, self.drops, self.config.anneal_step)
            self.policy.load_state_dict(self._snapshot)
            self._previous = None
            return
        self._previous = value
        self._snapshot = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
