"""What a benchmark suite is: its records, its options, its grid of jobs and its registry.

A suite (:class:`Suite`) lists independent jobs and turns one into :class:`RunRecord` s; the runner
(:mod:`seqrl.bench.runner`) fans them out through an executor (:mod:`seqrl.bench.executors`) and a result store
(:mod:`seqrl.bench.store`); the paired statistics of its report live in :mod:`seqrl.bench.stats`.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch

from ..algorithms import ALGORITHMS, config_fields, resolve_algorithm
from ..config import SettingError, check_value, describe
from ..registry import Registry
from .records import RunRecord
from .stats import format_records, paired_table


@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False
    seeds: tuple[int, ...] | None = None
    algos: tuple[str, ...] | None = None
    device: torch.device = torch.device("cpu")
    progress: bool | Literal["lines"] = True
    """True: bars; ``"lines"``: one line per finished job on stderr; False: silent."""
    out: Path | None = None
    grid: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Suite-specific overrides of the grid, e.g. {"sizes": ("500",), "masks": ("1001111",)}."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Overrides of the suite's settings dataclass (``seqrl bench … --set lr=3e-4``)."""
    algorithm_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-algorithm overrides (``--set raml.num_samples=5``): fields of the algorithm's config, or of
    :class:`~seqrl.training.FitConfig` for that algorithm's training (``--set gdcpp.clip_grad_norm=1``)."""

    @property
    def bars(self) -> bool:
        """Whether the fits inside a job show bars (only in bar mode: with ``"lines"`` the job lines suffice)."""
        return self.progress is True

    def for_algorithm(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config overrides, FitConfig overrides) the user gave for algorithm ``name``."""
        given = self.algorithm_settings.get(name, {})
        own = config_fields(resolve_algorithm(name))
        return ({k: v for k, v in given.items() if k in own}, {k: v for k, v in given.items() if k not in own})


class Suite:
    """A benchmark suite: ``jobs`` lists units of work; ``run_job`` turns one into records.

    A suite names no algorithm: it states what it ``offers`` (``"data"``: training references,
    ``"reward"``: a reward to score samples against them, ``"potential"``: an EBM and a proposal), and runs
    every registered algorithm whose :class:`~seqrl.algorithms.base.Requirements` it meets. ``comparison``
    is the metric and direction of the paired comparison with the ``reference`` row.
    """

    name = "suite"
    offers: frozenset[str] = frozenset()
    settings_class: type | None = None
    """The dataclass ``--set KEY=VALUE`` overrides."""
    grid_options: tuple[str, ...] = ()
    """Which of the CLI's grid options (``--sizes``, ``--motifs``, ``--masks``, ``--data``) apply."""
    comparison: tuple[str, str] | None = None
    reference = "mle"

    def accepts(self, cls: Any) -> bool:
        """Whether this suite can run algorithm class ``cls``."""
        req = cls.requires
        wanted = {"data"} if req.data else set()
        wanted |= {"reward"} if req.reward else set()
        wanted |= {"potential"} if req.potential else set()
        if "potential" in self.offers:  # a potential-only suite runs the algorithms that train toward one
            return req.potential and wanted <= self.offers
        return wanted <= self.offers and not req.potential

    def available_algos(self) -> list[str]:
        return [name for name, cls in ALGORITHMS.items() if self.accepts(cls)]

    def default_algos(self) -> list[str]:
        return [name for name, cls in ALGORITHMS.items() if self.accepts(cls) and cls.in_default_bench]

    def jobs(self, options: BenchOptions) -> list[dict[str, Any]]:
        raise NotImplementedError

    def run_job(self, job: dict[str, Any], options: BenchOptions) -> list[RunRecord]:
        raise NotImplementedError

    def table(self, records: list[RunRecord]) -> str:
        return format_records(records)

    def report(self, records: list[RunRecord]) -> str:
        """The suite's table, then the paired comparison with the reference row."""
        text = self.table(records)
        if self.comparison is not None:
            metric, direction = self.comparison
            paired = paired_table(records, metric, direction, self.reference)
            if paired:
                text += "\n\n" + paired
        return text

    def plot(self, records: list[RunRecord], out: Path) -> list[Path]:
        return []


def override_settings(settings: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` with names checked and values checked against each field's type
    (an int is accepted where a float is expected)."""
    if not overrides:
        return settings
    hints = typing.get_type_hints(type(settings))
    unknown = sorted(set(overrides) - {f.name for f in fields(settings)})
    if unknown:
        raise SettingError(f"unknown setting(s) {unknown}; known: {sorted(f.name for f in fields(settings))}",
                           unknown[0])
    cast: dict[str, Any] = {}
    for key, value in overrides.items():
        try:
            cast[key] = check_value(key, value, hints[key])
        except SettingError as err:
            if "finite" in str(err) or "integer range" in str(err):
                raise
            raise SettingError(f"setting {key!r} expects {describe(hints[key])}, got {value!r}", key) from None
    return replace(settings, **cast)


def split_algorithm_settings(settings: dict[str, Any], available: Sequence[str]
                             ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split ``--set`` overrides into the suite's own and per-algorithm ones (``ALGO.FIELD``), checking
    that each algorithm is available and each field is one of its config's or of FitConfig's."""
    from ..training import FitConfig

    fit_fields = {f.name for f in fields(FitConfig)} - {"device", "seed", "progress", "checkpoint", "log_dir",
                                                         "tensorboard_dir", "state_path", "state_every"}
    plain: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        if "." not in key:
            plain[key] = value
            continue
        algo, field_name = key.rsplit(".", 1)
        if algo not in available and ":" not in algo:
            raise KeyError(f"--set {key}: no algorithm {algo!r} in this suite; available: {list(available)}")
        known = config_fields(resolve_algorithm(algo)) | fit_fields
        if field_name not in known:
            raise KeyError(f"--set {key}: {algo} has no setting {field_name!r}; known: {sorted(known)}")
        per.setdefault(algo, {})[field_name] = value
    for algo, given in per.items():  # values and ranges checked now, not when the algorithm's turn comes
        cls = resolve_algorithm(algo)
        own = config_fields(cls)
        try:
            cls.Config(**{k: v for k, v in given.items() if k in own})
            FitConfig(**{k: v for k, v in given.items() if k not in own})
        except SettingError as err:
            if err.key is None:
                raise
            raise SettingError(f"--set {algo}.{err.key}: {err}", f"{algo}.{err.key}") from None
    return plain, per


SUITES: Registry[Callable[[], Suite]] = Registry("suite", group="seqrl.suites")


def register_suite(name: str):
    return SUITES.register(name)




__all__ = ["SUITES", "BenchOptions", "RunRecord", "Suite", "override_settings", "register_suite",
           "split_algorithm_settings"]
