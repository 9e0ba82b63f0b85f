"""One row of a benchmark table, the same way in every suite: a fresh copy of the starting policy, the seed, the
algorithm from the one builder (:func:`~seqrl.algorithms.make_algorithm`) with the suite's protocol and the
user's ``--set ALGO.FIELD`` settings, and :func:`~seqrl.training.fit` with the suite's loop settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..algorithms import Algorithm, AlgorithmConfig, Offer, make_algorithm, resolve_algorithm
from ..callbacks import Callback
from ..training import FitConfig, FitResult, fit
from ..utils import seed_everything
from .suite import BenchOptions

_BASE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AlgorithmConfig)}


def suite_defaults(name: str, **values: Any) -> dict[str, Any]:
    """A suite's common optimizer settings (``lr``, ``clip_grad_norm``, ``weight_decay``) for algorithm ``name``,
    left out where the algorithm's Config declares its own value (ERAC's Table-6 rates, GDC++'s no clipping):
    a suite sets what its algorithms share, never what an algorithm's paper fixed."""
    own = {f.name: f.default for f in dataclasses.fields(resolve_algorithm(name).Config)}
    return {k: v for k, v in values.items() if k not in _BASE_DEFAULTS or own.get(k) == _BASE_DEFAULTS[k]}


@dataclass
class Row:
    """What one run of ``algorithm`` needs: where it starts, what the run offers, the suite's settings for it (its
    protocol), the loop's settings, and how it is evaluated."""

    algorithm: str
    start: Callable[[], Any]
    """Makes the starting policy (a fresh copy each call)."""
    offer: Offer
    settings: dict[str, Any] = field(default_factory=dict)
    fit: FitConfig = field(default_factory=FitConfig)
    train: Any = None
    evaluate: Callable[[Any], dict[str, float]] | None = None
    callbacks: Sequence[Callback] = ()


def run_row(row: Row, options: BenchOptions, seed: int) -> tuple[Any, Algorithm, FitResult]:
    """Train one row: (the trained policy, the algorithm, what fit did). The user's ``--set ALGO.FIELD`` settings
    win over the suite's (config fields and FitConfig fields alike)."""
    policy = row.start()
    seed_everything(seed)  # after the start (which may draw its own init): the algorithm's init is the seed's
    config_overrides, fit_overrides = options.for_algorithm(row.algorithm)
    algorithm = make_algorithm(row.algorithm, policy, row.offer, **{**row.settings, **config_overrides})
    fit_config = replace(row.fit, seed=seed, device=str(options.device), progress=options.bars, **fit_overrides)
    result = fit(algorithm, row.train, evaluate=row.evaluate, callbacks=list(row.callbacks), config=fit_config)
    return policy, algorithm, result


__all__ = ["Row", "run_row", "suite_defaults"]
