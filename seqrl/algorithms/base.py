"""What every algorithm is: a thin module with a frozen config, two verbs (``collect`` a
rollout, compute its ``loss``) and optional hooks. The optimizer, clipping, evaluation
and early stopping live in the one training loop, :func:`seqrl.training.fit`.

An algorithm also declares what whoever runs it must provide (:class:`Requirements`) and its
benchmark defaults (:meth:`Algorithm.bench_kwargs`), so that a suite runs any registered
algorithm it can serve without knowing its name."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from ..policies.base import AutoregressivePolicy
from ..registry import Registry
from ..types import SequenceBatch, Vocab


@dataclass(frozen=True)
class ERPOPoint:
    """An algorithm's place in ERPO ([ERPO] Eq. 1): reward R, KL weight α, entropy weight β.

    ``alpha = 0.0`` stands for the limit α → 0.
    """

    reward: str
    alpha: float
    beta: float

    def __str__(self) -> str:
        alpha = "→0" if self.alpha == 0 else f"={self.alpha:g}"
        return f"(R={self.reward}, α{alpha}, β={self.beta:g})"


@dataclass(frozen=True, kw_only=True)
class Requirements:
    """What an algorithm needs from whoever runs it; suites read this instead of algorithm names."""

    reward: bool = False
    """Its constructor takes ``reward=`` (a registered name or a Reward) scoring samples against references."""
    potential: bool = False
    """Its constructor takes ``potential=`` (an EBM, log P(x) → [B]) and ``proposal=`` (a policy to sample from)."""
    data: bool = True
    """It learns from the task's training references (False: it draws its own samples)."""
    from_scratch: bool = False
    """Its paper trains it from a random initialization (else it fine-tunes a pretrained policy)."""
    monitors: tuple[str, ...] = ()
    """Evaluation metrics its :meth:`Algorithm.on_evaluation` reads; :func:`~seqrl.training.fit` stops with
    an error when an evaluation lacks one (the algorithm would silently never react)."""


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What a suite (or ``seqrl train``) offers the algorithms it runs; read by :meth:`Algorithm.bench_kwargs`."""

    vocab: Vocab
    max_len: int
    train: SequenceBatch | None = None
    valid: SequenceBatch | None = None
    reward: str | None = None
    """The suite's reward, by registered name."""
    potential: Any = None
    proposal: Any = None
    steps_per_epoch: int = 1
    budget_steps: int = 1
    """Optimizer steps the run gets."""
    from_scratch: bool = False
    """Whether this run starts from a random initialization."""
    samples_per_step: int | None = None
    """Episodes per update for algorithms that sample their own data (None: their default)."""
    draw_samples: int | None = None
    """Samples an algorithm draws once to train on, e.g. distillation's exact samples (None: its default)."""
    estimate_samples: int | None = None
    """Samples for the divergence estimates some algorithms make on evaluation (None: their default)."""


@dataclass(frozen=True)
class ParamGroup:
    """Parameters that :func:`~seqrl.training.fit` updates with their own Adam and clipping."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    lr: float | None = None
    """None: ``FitConfig.lr``."""
    clip_grad_norm: float | None | Literal["fit"] = "fit"
    """Max gradient norm of this group; ``"fit"``: ``FitConfig.clip_grad_norm``; None: never clipped."""
    weight_decay: float | None = None
    """None: ``FitConfig.weight_decay``."""


class Algorithm(nn.Module):
    """Base class. Subclasses set ``name``, ``Config`` and implement :meth:`loss`.

    Attributes:
        uses_data: whether :func:`~seqrl.training.fit` feeds it minibatches (of the training set, or of
            the data its :meth:`setup` draws); data-free algorithms (DPG, KL-control) get ``None``.
        requires: what a suite must provide to run it (:class:`Requirements`).
        erpo_point: the algorithm's (R, α, β), where the papers give one.
        in_default_bench: whether ``seqrl bench`` runs it when no ``--algos`` are given
            (a generic algorithm whose defaults duplicate a named one sets False).
        fit_overrides: :class:`~seqrl.training.FitConfig` fields the benchmarks use for it in place of the
            suite's (measured choices, each with its reason in the subclass's docstring).
    """

    name: ClassVar[str] = "algorithm"
    uses_data: ClassVar[bool] = True
    requires: ClassVar[Requirements] = Requirements()
    erpo_point: ClassVar[ERPOPoint | None] = None
    in_default_bench: ClassVar[bool] = True
    fit_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, policy: AutoregressivePolicy, config: Any = None) -> None:
        super().__init__()
        self.policy = policy
        config_cls = getattr(type(self), "Config", None)
        self.config = config if config is not None else (config_cls() if config_cls else None)
        if config_cls is not None and not isinstance(self.config, config_cls):
            raise TypeError(f"{type(self).__name__} takes a {config_cls.__name__}, got {type(self.config).__name__}")
        if self.config is not None:
            from ..config import validate_fields

            validate_fields(self.config, type(self).name)

    @classmethod
    def bench_kwargs(cls, context: RunContext) -> dict[str, Any]:
        """Keyword arguments for :func:`~seqrl.algorithms.make_algorithm` in a benchmark run: what
        :attr:`requires` names, taken from ``context``, plus the algorithm's benchmark defaults."""
        kwargs: dict[str, Any] = {}
        if cls.requires.reward:
            if context.reward is None:
                raise ValueError(f"{cls.name} needs a reward, and the run offers none")
            kwargs["reward"] = context.reward
        if cls.requires.potential:
            if context.potential is None:
                raise ValueError(f"{cls.name} needs a potential, and the run offers none")
            kwargs.update(potential=context.potential, proposal=context.proposal)
        return kwargs

    def resolve_reward(self, reward: Any = None) -> Any:
        """The Reward object given, else the one ``config.reward`` names (built for the policy's vocab)."""
        from ..rewards.base import make_reward

        if reward is not None and not isinstance(reward, str):
            return reward
        assert self.config is not None, "an algorithm that resolves a reward has a Config"
        return make_reward(reward or self.config.reward, self.policy.vocab)

    def param_groups(self) -> list[ParamGroup]:
        """The groups :func:`~seqrl.training.fit` optimizes, each with its own Adam and clipping
        (one group, the policy's trainable parameters, unless the algorithm trains more, e.g. a critic)."""
        return [ParamGroup("policy", [p for p in self.policy.parameters() if p.requires_grad])]

    def setup(self, train: SequenceBatch | None) -> SequenceBatch | None:
        """Called once by :func:`~seqrl.training.fit` before the first step; returns the data to train on
        (distillation draws its samples here)."""
        return train

    def collect(self, batch: SequenceBatch | None) -> Any:
        """Turn a data minibatch (or ``None``) into what :meth:`loss` consumes."""
        return batch

    def loss(self, rollout: Any) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss to minimise and diagnostics (floats)."""
        raise NotImplementedError

    def on_step_end(self, step: int) -> None:
        """Called after every optimizer step (schedules: MIXER's m, scheduled sampling's ε)."""

    def on_evaluation(self, step: int, metrics: dict[str, float]) -> None:
        """Called after every evaluation (proposal swaps, interpolation annealing)."""

    def group_lr(self, step: int) -> dict[str, float]:
        """Learning rates for the optimizer step after ``step`` completed steps, by parameter-group name
        (a phase switch, a decay); groups left out keep their rate. :func:`~seqrl.training.fit` reads it
        before every step and writes the rates into the groups' Adams; derive them from state the algorithm
        saves (its buffers and plain attributes), so that ``fit(resume_from=…)`` reproduces them."""
        return {}

    def monitor_ready(self) -> bool:
        """Whether an evaluation now measures what training has changed. While False (e.g. a phase that
        trains only a critic, the policy frozen since the start), :func:`~seqrl.training.fit`'s early stopping
        neither counts the evaluation towards ``patience`` nor keeps its weights as the best."""
        return True

    def summary(self) -> dict[str, float]:
        """End-of-run figures worth recording beside the metrics (episodes drawn, acceptance rate…)."""
        episodes = getattr(self, "episodes", None)
        return {} if episodes is None else {"episodes": float(episodes)}


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm", group="seqrl.algorithms")


def register_algorithm(name: str):
    """Class decorator registering an :class:`Algorithm` under ``name``."""

    def add(cls: type[Algorithm]) -> type[Algorithm]:
        cls.name = name
        return ALGORITHMS.register(name, cls)

    return add


def config_fields(cls: type[Algorithm]) -> set[str]:
    """Names of the fields of ``cls.Config`` (empty when it takes no configuration)."""
    config_cls = getattr(cls, "Config", None)
    return {f.name for f in fields(config_cls)} if config_cls is not None else set()


def config_from_kwargs(cls: type[Algorithm], **kwargs: Any) -> Any:
    """Build ``cls.Config`` from keyword arguments, naming unknown fields in the error."""
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        if kwargs:
            raise TypeError(f"{cls.name} takes no configuration, got {sorted(kwargs)}")
        return None
    known = config_fields(cls)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"{cls.name}: unknown config fields {unknown}; known: {sorted(known)}")
    from ..config import check_settings

    return config_cls(**check_settings(kwargs, config_cls, cls.name))
