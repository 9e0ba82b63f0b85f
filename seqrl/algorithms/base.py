"""What every algorithm is: a module that owns its whole update.

An algorithm is a frozen ``Config`` (checked when it is made), a constructor that takes the policy, the config and
what it trains toward (``reward=``, ``potential=``, ``critic=``…), and one method, :meth:`Algorithm.update`, that
takes a minibatch of references (or ``None``, for an algorithm that draws its own samples) and does one whole
step: sampling, the loss, the backward pass, clipping, its optimizers, and whatever the algorithm schedules
(phases, learning rates, target networks, proposal swaps, annealing). It returns its metrics as tensors.
The training loop (:func:`seqrl.training.fit`) only feeds data, evaluates, stops early, checkpoints and logs.

What a run must save to resume an algorithm is declared, not guessed: its weights and buffers (the module's
``state_dict``), its optimizers (made by :meth:`Algorithm.add_optimizer`), and the plain attributes it names in
``resumable`` (counters, schedules); :meth:`Algorithm.training_state` gathers them.

The pure losses (``mle_loss``, ``dpg_loss``, …) are functions beside each algorithm; a reader understands any
algorithm's whole step from its own file plus the losses it imports.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import SettingError, Settings
from ..distributed import all_reduce_sum, average_gradients, world
from ..policies.base import AutoregressivePolicy
from ..registry import Registry, plugin_notes
from ..types import SequenceBatch


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
    """It learns from minibatches of references (False: it draws its own samples; ``update(None)``)."""
    from_scratch: bool = False
    """Its paper trains it from a random initialization (else it fine-tunes a pretrained policy)."""
    validation: bool = False
    """It reads validation data itself (``valid=``) to schedule its update (annealing, lr decay, proposal swaps)."""
    prompts: bool = False
    """It needs prompts (``prompts=``): its target is one distribution per prompt."""


@dataclass(frozen=True, kw_only=True)
class Offer:
    """What a run offers the algorithm it builds (:func:`~seqrl.algorithms.make_algorithm`): the same for
    ``seqrl train``, every suite and the API, so that one builder gives one algorithm for one offer."""

    train: SequenceBatch | None = None
    """The training references (data algorithms' minibatches; the unigram of data noising)."""
    valid: SequenceBatch | None = None
    """Validation references, for algorithms that schedule on them (``requires.validation``)."""
    reward: Any = None
    """The run's reward: a registered name (sets ``config.reward``) or a Reward object (passed as ``reward=``)."""
    potential: Any = None
    proposal: Any = None
    """The policy a potential's samples are drawn from at the start (DPG's q, distillation's rejection proposal)."""
    prompts: SequenceBatch | None = None
    """Prompts for algorithms that draw their own samples (their completions are conditioned on them)."""
    epochs: int | None = None
    steps: int | None = None
    """The run's budget (fit's ``max_epochs`` / ``max_steps``), for schedules set as fractions of it."""
    from_scratch: bool = False
    """Whether the policy starts from a random initialization (schedules differ from fine-tuning)."""

    def steps_per_epoch(self, batch_size: int | None) -> int:
        """Optimizer steps in one pass over ``train`` (1 without data)."""
        if self.train is None or not batch_size:
            return 1
        return max(1, math.ceil(self.train.batch_size / batch_size))

    def budget(self, batch_size: int | None) -> int:
        """Optimizer steps the run gets: ``steps``, else ``epochs`` passes over the data (1 when unknown)."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return self.epochs * self.steps_per_epoch(batch_size)
        return 1


MAX_LR = 100.0
"""Largest learning rate (and weight decay) a config takes: Adam's step is about lr per weight, so beyond this a
step only overwrites the weights."""
MAX_PER_STEP = 10_000_000
"""Most sequences a step may hold: samples, minibatch rows, samples per reference, estimate draws."""
PER_STEP_COUNTS = ("samples_per_step", "batch_size", "num_samples", "q_num_samples", "kl_samples")


@dataclass(frozen=True, kw_only=True)
class AlgorithmConfig(Settings):
    """Settings every algorithm has: its policy's optimizer (Adam) and gradient clipping ([DPG] Sec. 4: Adam 1e-3).
    Every field is checked against its annotation on construction (finite floats, 64-bit ints), then by
    :meth:`check`, which subclasses extend with their ranges."""

    lr: float = 1e-3
    """Adam learning rate of the policy."""
    clip_grad_norm: float | None = 1.0
    """Largest gradient norm of the policy's update (rescaled above it); None: no clipping."""
    weight_decay: float = 0.0
    """Adam's L2 weight decay on the policy."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check()

    def check(self) -> None:
        """Ranges (types are checked already); raise :class:`~seqrl.config.SettingError` naming the field."""
        owner = type(self).__qualname__
        if not 0 <= self.lr <= MAX_LR:
            raise SettingError(f"{owner}.lr must be in [0, {MAX_LR:g}] (Adam's step size), got {self.lr}", "lr")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise SettingError(f"{owner}.clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}",
                               "clip_grad_norm")
        if not 0 <= self.weight_decay <= MAX_LR:
            raise SettingError(f"{owner}.weight_decay must be in [0, {MAX_LR:g}], got {self.weight_decay}",
                               "weight_decay")
        for name in PER_STEP_COUNTS:
            value = getattr(self, name, None)
            if isinstance(value, int) and value > MAX_PER_STEP:
                raise SettingError(f"{owner}.{name} = {value:,} exceeds the limit of {MAX_PER_STEP:,} sequences a "
                                   "step (every one is held in memory at once)", name)

    def positive(self, *names: str) -> None:
        """Each named field ≥ 1 (ints) or > 0 (floats)."""
        for name in names:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SettingError(f"{type(self).__qualname__}.{name} must be > 0, got {value}", name)

    def at_least_zero(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise SettingError(f"{type(self).__qualname__}.{name} must be ≥ 0, got {value}", name)


@dataclass(frozen=True, kw_only=True)
class DataConfig(AlgorithmConfig):
    """Settings of an algorithm that learns from minibatches of references."""

    batch_size: int = 64
    """References per update (the minibatch the loop feeds)."""

    def check(self) -> None:
        super().check()
        self.positive("batch_size")


@dataclass
class _Optimizer:
    optimizer: torch.optim.Optimizer
    params: list[nn.Parameter]
    clip: float | None


class Algorithm(nn.Module):
    """Base class. A subclass sets ``Config``, ``requires`` and implements :meth:`update`; it makes its optimizers
    with :meth:`add_optimizer` and steps them with :meth:`optimize` (or by hand), and lists in ``resumable`` the plain
    attributes its schedule keeps. Register it with :func:`register_algorithm`."""

    name: ClassVar[str] = "algorithm"
    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    requires: ClassVar[Requirements] = Requirements()
    erpo_point: ClassVar[ERPOPoint | None] = None
    in_default_bench: ClassVar[bool] = True
    """Whether ``seqrl bench`` runs it when no ``--algos`` are given."""
    uses_data: ClassVar[bool] = True
    """Whether :func:`~seqrl.training.fit` feeds it minibatches (of the run's data, or of what its :meth:`setup`
    draws) and its budget counts epochs; False: ``update(None)``, it draws its own samples every step."""
    resumable: ClassVar[tuple[str, ...]] = ("steps",)
    """Plain attributes a resumed run must get back (besides weights, buffers and optimizer states)."""
    learns_from_prompts: ClassVar[bool] = False
    """A data algorithm whose data may be prompts alone (:func:`~seqrl.prompts.prompt_rows`: each row a prompt and
    no reference), its reward scoring the completions it samples (REINFORCE); the algorithms that draw their own
    samples take ``prompts=`` instead."""

    config: Any

    def __init__(self, policy: AutoregressivePolicy, config: AlgorithmConfig | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__qualname__}, "
                            f"got {type(self.config).__name__}")
        self._optimizers: dict[str, _Optimizer] = {}
        self.steps = 0
        """Updates done."""

    @classmethod
    def defaults_for(cls, policy: AutoregressivePolicy, offer: Offer, given: dict[str, Any]) -> dict[str, Any]:
        """Settings that follow from the policy and what the run offers (e.g. one annealing step per epoch), below
        the caller's explicit ``given`` settings and above the Config's defaults; may name constructor arguments."""
        return {}

    # --- what the loop reads ---------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        """References per update, for algorithms that learn from data."""
        return getattr(self.config, "batch_size", None) if self.uses_data else None

    @property
    def monitor(self) -> tuple[str, str]:
        """(metric, "min" | "max") that ranks its evaluations by default: the reward on validation for algorithms
        that optimize one, validation CE otherwise."""
        return ("valid_reward", "max") if self.requires.reward else ("valid_ce", "min")

    def monitor_ready(self) -> bool:
        """Whether an evaluation now measures what training changed. False during a phase that trains only a critic
        (the policy frozen since the start): early stopping then neither counts it nor keeps its weights."""
        return True

    def setup(self, train: SequenceBatch | None) -> SequenceBatch | None:
        """The data to train on, from what the run gives (distillation draws its own samples here)."""
        return train

    def update(self, batch: SequenceBatch | None) -> dict[str, Tensor | float]:
        """One whole training step on ``batch``; returns its metrics (tensors, or numbers), ``loss`` among them."""
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        """End-of-run figures worth recording beside the metrics (episodes drawn, acceptance rate…)."""
        episodes = getattr(self, "episodes", None)
        return {} if episodes is None else {"episodes": float(episodes)}

    # --- optimizers ------------------------------------------------------------------------------------------
    def add_optimizer(self, group: str, params: Any, *, lr: float, clip: float | None,
                  weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
        """An Adam over ``params`` under the name ``group`` (``betas``: Adam's (β1, β2)), stepped by :meth:`optimize`
        after clipping its gradients to ``clip`` (None: no clipping); saved and restored with the algorithm's training
        state."""
        params = [p for p in params if p.requires_grad]
        if group in self._optimizers:
            raise ValueError(f"{self.name}: optimizer group {group!r} made twice")
        if not params:
            raise ValueError(f"algorithm {self.name!r}: group {group!r} has no trainable parameters")
        adam = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas)
        self._optimizers[group] = _Optimizer(adam, params, clip)
        return adam

    def policy_optimizer(self) -> torch.optim.Optimizer:
        """The policy's Adam from the config's ``lr``, ``clip_grad_norm`` and ``weight_decay``."""
        c = self.config
        return self.add_optimizer("policy", self.policy.parameters(), lr=c.lr, clip=c.clip_grad_norm,
                              weight_decay=c.weight_decay)

    def optimizer_groups(self) -> dict[str, Any]:
        """The optimizers by group name, each with ``.optimizer``, ``.params`` and ``.clip``."""
        return dict(self._optimizers)

    def set_lr(self, group: str, lr: float) -> None:
        for param_group in self._optimizers[group].optimizer.param_groups:
            param_group["lr"] = float(lr)

    def set_beta1(self, group: str, beta1: float) -> None:
        """Adam's β1 of ``group`` from now on (its moment estimates carry over)."""
        for param_group in self._optimizers[group].optimizer.param_groups:
            param_group["betas"] = (float(beta1), param_group["betas"][1])

    def optimize(self, loss: Tensor, groups: tuple[str, ...] | None = None) -> dict[str, Tensor | float]:
        """Backpropagate ``loss`` and step the named optimizer groups (all by default), each after clipping its
        own gradients; return the loss and each group's gradient norm before clipping (as tensors).

        A non-finite loss stops the run before any weight changes; the check reads the loss on the CPU, where it
        costs nothing, and is left to the logged metrics on an accelerator (no host sync per step)."""
        if loss.device.type == "cpu" and not bool(all_reduce_sum(torch.isfinite(loss.detach()).double()) ==
                                                  world().size):  # every rank stops together
            raise FloatingPointError(f"{self.name}: loss became {float(loss.detach())} at step {self.steps}"
                                     f"{plugin_notes(self)}")
        names = tuple(self._optimizers) if groups is None else groups
        for name in names:
            self._optimizers[name].optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics: dict[str, Tensor | float] = {"loss": loss.detach()}
        for i, name in enumerate(names):
            entry = self._optimizers[name]
            average_gradients(entry.params)  # several processes: the global batch's gradient, before clipping
            if entry.clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(entry.params, entry.clip)
                metrics["grad_norm" if i == 0 else f"grad_norm_{name}"] = norm.detach()
            entry.optimizer.step()
        self.steps += 1
        return metrics

    # --- what a resumed run needs ----------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        """Weights and buffers, optimizer states and the ``resumable`` attributes, as data (tensors, numbers,
        strings and containers of them)."""
        return {"modules": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
                "optimizers": {n: e.optimizer.state_dict() for n, e in self._optimizers.items()},
                "attributes": {k: copy.deepcopy(getattr(self, k)) for k in self.resumable}}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["modules"])
        if set(state["optimizers"]) != set(self._optimizers):
            raise ValueError(f"{self.name}: the saved state has optimizer groups {sorted(state['optimizers'])}, "
                             f"this algorithm {sorted(self._optimizers)}")
        for name, saved in state["optimizers"].items():
            self._optimizers[name].optimizer.load_state_dict(saved)
        for key, value in state["attributes"].items():
            setattr(self, key, value)


def resolve_reward(reward: Any, name: str, vocab: Any) -> Any:
    """The Reward object given, else the registered reward ``name`` (the config's) built for ``vocab``."""
    from ..rewards.base import make_reward

    if reward is not None and not isinstance(reward, str):
        return reward
    return make_reward(reward or name, vocab)


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm", group="seqrl.algorithms")


def register_algorithm(name: str):
    """Class decorator registering an :class:`Algorithm` under ``name``."""

    def add(cls: type[Algorithm]) -> type[Algorithm]:
        cls.name = name
        return ALGORITHMS.register(name, cls)

    return add


def config_fields(cls: type[Algorithm]) -> set[str]:
    """Names of the fields of ``cls.Config``."""
    return {f.name for f in fields(cls.Config)}


__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmConfig", "DataConfig", "ERPOPoint", "Offer", "Requirements",
           "config_fields", "register_algorithm", "resolve_reward"]
