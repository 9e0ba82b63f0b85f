"""What the training loop shows to code that watches it: the live :class:`FitState` and the :class:`Callback`
hooks (loggers, learning curves, a user's own); :mod:`seqrl.training` runs them, :mod:`seqrl.tracking` implements
the loggers. A separate module, so that neither of those imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitState:
    """What callbacks see; setting ``stop = True`` ends training after the current step."""

    step: int = 0
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    """The latest logged step's metrics (numbers), and after an evaluation its metrics too."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Every evaluation's metrics, with the step."""
    stop: bool = False


class Callback:
    """Override any of these; each gets the algorithm and the live :class:`FitState`. ``on_step_end`` runs on the
    logged steps (every ``FitConfig.log_every`` steps: every step by default)."""

    def on_step_end(self, algorithm: Any, state: FitState) -> None: ...

    def on_evaluation(self, algorithm: Any, state: FitState) -> None: ...

    def on_fit_end(self, algorithm: Any, state: FitState) -> None: ...


__all__ = ["Callback", "FitState"]
