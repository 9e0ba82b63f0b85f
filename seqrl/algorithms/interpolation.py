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

import torch
from torch import Tensor

from ..proposals import MixtureRecorder, samples_per_reference
from ..types import SequenceBatch
from ..utils import masked_sum
from .base import Algorithm, Requirements, register_algorithm


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
    requires = Requirements(reward=True, from_scratch=True, monitors=("valid_reward",))

    config: Config  # set by Algorithm.__init__

    @dataclass(frozen=True, kw_only=True)
    class Config:
        reward: str = "bleu"
        """R_comm, the common reward (any registered reward)."""
        initial_weights: tuple[float, float, float] = (0.04, 0.0, 0.96)
        """(λ1, λ2, λ3) at the start ([ERPO] C.2)."""
        anneal_step: float = 0.06
        sharpness: float = 1.0
        """c, the scale inside every component's exponent."""
        monitor: str = "valid_reward"
        """Evaluation metric whose decreases trigger annealing (higher is better)."""

    def __init__(self, policy, config=None, *, reward=None) -> None:
        super().__init__(policy, config)
        w = self.config.initial_weights
        if len(w) != 3 or min(w) < 0 or abs(sum(w) - 1) > 1e-6:
            raise ValueError(f"initial_weights must be a distribution over 3 components, got {w}")
        self.weights = (float(w[0]), float(w[1]), float(w[2]))
        self.reward = self.resolve_reward(reward)
        self.drops = 0
        self._previous: float | None = None
        """The last accepted evaluation's value under the current λ (None right after annealing)."""
        self._snapshot: dict[str, Tensor] | None = None

    def collect(self, batch: SequenceBatch | None) -> SequenceBatch:
        assert batch is not None, "uses_data: fit feeds it training minibatches"
        refs = batch.with_context(None)
        rec = MixtureRecorder(self.reward, refs, self.policy.vocab, self.policy.max_len, self.weights,
                              sharpness=self.config.sharpness)
        with torch.no_grad():
            samples = samples_per_reference(self.policy, batch, 1, override=rec)
        return samples.batch

    def loss(self, rollout: SequenceBatch) -> tuple[Tensor, dict[str, float]]:
        logp = masked_sum(self.policy.token_log_probs(rollout), rollout.mask_t)
        l1, l2, l3 = self.weights
        return -logp.mean(), {"lambda1": l1, "lambda2": l2, "lambda3": l3}

    def on_evaluation(self, step: int, metrics: dict[str, float]) -> None:
        value = metrics.get(self.config.monitor)
        if value is None:
            return
        if self._previous is not None and value < self._previous and self._snapshot is not None:
            self.drops += 1
            self.weights = anneal(self.weights, self.drops, self.config.anneal_step)
            self.policy.load_state_dict(self._snapshot)  # "we would not update θ" on a decrease
            self._previous = None
            return
        self._previous = value
        self._snapshot = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
