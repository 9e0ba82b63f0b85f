"""Distillation ([DPG] Sec. 3.2): exact samples of p = P/Z by rejection sampling, then MLE."""

from __future__ import annotations

from dataclasses import dataclass

from ..ebm.sampling import base_log_ratio, potential_log_ratio, rejection_sample
from ..types import SequenceBatch
from .base import Requirements, register_algorithm
from .mle import MLE


@register_algorithm("distill")
class Distill(MLE):
    """MLE on ``num_samples`` exact samples of p drawn by rejection from ``proposal``.

    ``log_bound`` bounds log P(x) − log q(x); a GAM with proposal r gives its own
    (:meth:`~seqrl.ebm.GAMPotential.log_ratio_bound`). The samples are drawn once, when training starts
    (:meth:`setup`); the MLE steps then run over them in epochs.
    """

    requires = Requirements(potential=True, data=False)
    erpo_point = None  # MLE's point is for the data distribution; distillation matches the potential's p
    resumable = ("steps", "acceptance_rate", "proposed")

    @dataclass(frozen=True, kw_only=True)
    class Config(MLE.Config):
        num_samples: int = 20_000
        """Exact samples of p to train on ([DPG] code: 20k)."""
        proposal_budget: int | None = None
        """Draw exactly this many samples of the proposal and train on every accepted one (``num_samples`` is then
        ignored): distillation at a sampling budget counted as DPG counts its episodes, draws of q (the GAM
        suite's ``distill_budget="episodes"`` sets Training-2's steps × episodes per step)."""
        log_bound: float | None = None
        """An upper bound of log P(x) − log q(x) for rejection sampling (None: the potential's own, a GAM over
        the proposal: :meth:`~seqrl.ebm.GAMPotential.log_ratio_bound`)."""

        def check(self) -> None:
            super().check()
            self.positive("num_samples", "proposal_budget")

    config: Config

    def __init__(self, policy, config: Config | None = None, *, potential=None, proposal=None) -> None:
        super().__init__(policy, config)
        log_bound = self.config.log_bound
        if potential is None or proposal is None:
            raise TypeError("distill needs potential=<potential> and proposal=<policy to reject from>")
        # Neither is a submodule of the algorithm: they are not trained, checkpointed or moved with it.
        object.__setattr__(self, "potential", potential)
        object.__setattr__(self, "proposal", proposal)
        if log_bound is None:
            if not hasattr(potential, "log_ratio_bound") or getattr(potential, "base", None) is not proposal:
                raise ValueError("distill needs log_bound unless the potential is a GAM over this proposal")
            log_bound = potential.log_ratio_bound()
        self.log_bound = log_bound
        self.acceptance_rate: float | None = None
        self.proposed = 0

    @property
    def episodes(self) -> int:
        """Proposal samples drawn (accepted or not)."""
        return self.proposed

    def setup(self, train: SequenceBatch | None) -> SequenceBatch:
        """The exact samples of p the MLE phase trains on (any ``train`` given is ignored)."""
        return self.training_data()

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "acceptance_rate": self.acceptance_rate or 0.0}

    def training_data(self) -> SequenceBatch:
        """Draw the exact samples (rejection sampling) the MLE phase trains on."""
        is_base = getattr(self.potential, "base", None) is self.proposal
        is_base = is_base and hasattr(self.potential, "log_ratio_to_base")
        ratio = base_log_ratio(self.potential) if is_base else potential_log_ratio(self.potential)
        result = rejection_sample(self.proposal, ratio, self.config.num_samples, self.log_bound,
                                  budget=self.config.proposal_budget)
        self.acceptance_rate, self.proposed = result.acceptance_rate, result.proposed
        return result.samples
