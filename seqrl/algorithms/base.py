"""What every algorithm is: a thin module with a frozen config, two verbs (``collect`` a
rollout, compute its ``loss``) and optional hooks. The optimizer, clipping, evaluation
and early stopping live in the one training loop, :func:`seqrl.training.fit`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ..registry import Registry
from ..types import SequenceBatch


@dataclass(frozen=True)
class ERPOPoint:
    """An algorithm's place in ERPO ([ERPO] Eq. 1): reward R, KL weight α, entropy weight β.

    ``alpha = 0.0`` stands for the limit α → 0.
    """

    reward: str
    alpha: float
    beta: float


class Algorithm(nn.Module):
    """Base class. Subclasses set ``name``, ``Config`` and implement :meth:`loss`.

    Attributes:
        uses_data: whether :func:`~seqrl.training.fit` feeds it minibatches of the training
            set (MLE, RAML…); data-free algorithms (DPG, KL-control) get ``None``.
        erpo_point: the algorithm's (R, α, β), where the papers give one.
    """

    name: ClassVar[str] = "algorithm"
    uses_data: ClassVar[bool] = True
    erpo_point: ClassVar[ERPOPoint | None] = None

    def __init__(self, policy: nn.Module, config: Any = None) -> None:
        super().__init__()
        self.policy = policy
        config_cls = getattr(type(self), "Config", None)
        self.config = config if config is not None else (config_cls() if config_cls else None)
        if config_cls is not None and not isinstance(self.config, config_cls):
            raise TypeError(f"{type(self).__name__} takes a {config_cls.__name__}, got {type(self.config).__name__}")

    def resolve_reward(self, reward: Any = None) -> Any:
        """The Reward object given, else the one ``config.reward`` names (built for the policy's vocab)."""
        from ..rewards.base import make_reward

        return reward if reward is not None else make_reward(self.config.reward, self.policy.vocab)

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

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config) if is_dataclass(self.config) else {}


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm", group="seqrl.algorithms")


def register_algorithm(name: str):
    """Class decorator registering an :class:`Algorithm` under ``name``."""

    def add(cls: type[Algorithm]) -> type[Algorithm]:
        cls.name = name
        return ALGORITHMS.register(name, cls)

    return add


def config_from_kwargs(cls: type[Algorithm], **kwargs: Any) -> Any:
    """Build ``cls.Config`` from keyword arguments, naming unknown fields in the error."""
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        if kwargs:
            raise TypeError(f"{cls.name} takes no configuration, got {sorted(kwargs)}")
        return None
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"{cls.name}: unknown config fields {unknown}; known: {sorted(known)}")
    return config_cls(**kwargs)
