"""The one training loop: every algorithm is driven by :func:`fit`.

Batches in (or none, for data-free algorithms), ``algorithm.collect`` → ``algorithm.loss``
→ backward → clip → step, evaluation on validation with early stopping and best-weight
restore, callbacks, a progress bar, checkpoints.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from .checkpoint import (
    load_checkpoint,  # noqa: F401  (re-exported: seqrl.training.load_checkpoint)
    load_training_state,
    rng_state,
    run_inputs,
    save_checkpoint,  # noqa: F401  (re-exported)
    save_training_state,
    set_rng_state,
)
from .config import validate_fields
from .interrupts import Interrupted, InterruptFlag
from .metrics import cross_entropy
from .registry import plugin_notes
from .types import BatchError, SequenceBatch, check_vocab
from .utils import resolve_device, seed_everything


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Settings of the training loop (the DPG paper's values where it gives them)."""

    max_epochs: int | None = 100
    """Passes over the training data (data-using algorithms)."""
    max_steps: int | None = None
    """Optimizer steps; required for data-free algorithms."""
    batch_size: int = 64
    """Sequences per minibatch."""
    lr: float = 1e-3
    """Adam learning rate ([DPG] Sec. 4: 1e-3)."""
    weight_decay: float = 0.0
    clip_grad_norm: float | None = 1.0
    """Max gradient norm ([DPG]: 0.25); None disables clipping."""
    eval_every: int | None = None
    """Steps between evaluations; default once per epoch (data) or every 100 steps (data-free)."""
    patience: int | None = None
    """Evaluations without improvement before stopping ([DPG]: 8); None never stops early."""
    restore_best: bool = True
    """Reload the best evaluated weights at the end."""
    evaluate_at_start: bool = False
    """Also evaluate the initial weights (step 0), so that fine-tuning with ``restore_best``
    never returns a policy worse on the monitor than the one it started from."""
    device: str = "auto"
    seed: int = 0
    progress: bool | Literal["lines"] = True
    """True: a tqdm progress bar; ``"lines"``: one plain line per evaluation on stderr (a log that is not a
    terminal: it shows the run is alive without a bar's carriage returns); False: nothing."""
    checkpoint: str | None = None
    """Path to save the final (best) policy to."""
    state_path: str | None = None
    """Path of the full training state (weights, optimizers, RNGs, early stopping, data position,
    history), written atomically every ``state_every`` steps and on Ctrl-C; ``fit(resume_from=…)``
    continues from it bit-identically."""
    state_every: int | None = None
    """Steps between training-state saves (default: at every evaluation)."""
    log_dir: str | None = None
    """Folder of ``metrics.csv``: one row per step (loss, every reported metric, evaluation metrics on
    the steps evaluated); see :mod:`seqrl.tracking`."""
    tensorboard_dir: str | None = None
    """Folder of TensorBoard events of the same scalars (needs ``seqrl[tensorboard]``)."""

    def __post_init__(self) -> None:
        _check_config(self)


@dataclass
class FitState:
    """What callbacks see; setting ``stop = True`` ends training after the current step."""

    step: int = 0
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best: float
    """The monitored metric at the best evaluation (NaN when nothing was evaluated)."""
    best_step: int
    steps: int
    wall_s: float


class Callback:
    """Override any of these; each gets the algorithm and the live :class:`FitState`."""

    def on_step_end(self, algorithm, state: FitState) -> None: ...

    def on_evaluation(self, algorithm, state: FitState) -> None: ...

    def on_fit_end(self, algorithm, state: FitState) -> None: ...


class EarlyStopping(Callback):
    """Tracks the best value of ``monitor``; stops after ``patience`` evaluations without
    improvement (None: never) and, with ``restore_best``, reloads the best weights at the end.
    Evaluations made while the algorithm's ``monitor_ready()`` is False are not ranked."""

    def __init__(self, monitor: str = "valid_ce", mode: Literal["min", "max"] = "min", patience: int | None = None,
                 restore_best: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be ≥ 1 or None, got {patience}")
        self.monitor, self.mode, self.patience, self.restore_best = monitor, mode, patience, restore_best
        self.sign = 1.0 if mode == "min" else -1.0
        self.best_value = math.inf  # sign-adjusted: lower is better
        self.best_step = 0
        self.evals_since_best = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    @property
    def best(self) -> float:
        return self.sign * self.best_value if self.best_value < math.inf else math.nan

    def on_evaluation(self, algorithm, state: FitState) -> None:
        if self.monitor not in state.metrics:
            raise KeyError(f"monitor {self.monitor!r} not among evaluation metrics {sorted(state.metrics)}")
        ready = getattr(algorithm, "monitor_ready", None)
        if ready is not None and not ready():
            return  # the monitored policy has not been trained since the last ranked evaluation
        raw = state.metrics[self.monitor]
        if not math.isfinite(raw):
            raise FloatingPointError(f"evaluation returned {self.monitor} = {raw} at step {state.step}: "
                                     "early stopping cannot rank it")
        value = self.sign * raw
        if value < self.best_value:
            self.best_value, self.best_step, self.evals_since_best = value, state.step, 0
            if self.restore_best:
                self.best_weights = {k: v.detach().cpu().clone() for k, v in algorithm.state_dict().items()}
        else:
            self.evals_since_best += 1
            if self.patience is not None and self.evals_since_best >= self.patience:
                state.stop = True

    def on_fit_end(self, algorithm, state: FitState) -> None:
        if self.best_weights is not None:
            algorithm.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step, "evals_since_best": self.evals_since_best,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.evals_since_best, self.best_weights = state["evals_since_best"], state["best_weights"]


class TrainingInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during :func:`fit`; ``saved`` is the training-state file written first (or None)."""

    def __init__(self, step: int, saved: Path | None, signum: int = signal.SIGINT) -> None:
        where = f"; state saved to {saved} (resume with resume_from=…)" if saved else ""
        what = "interrupted" if signum == signal.SIGINT else "terminated"
        super().__init__(f"training {what} at step {step}{where}", signum)
        self.step, self.saved = step, saved


def _plain(value: Any) -> bool:
    """Whether ``value`` is data (numbers, strings, tensors and containers of them), not an object."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def algorithm_attributes(algorithm) -> dict[str, Any]:
    """The algorithm's plain attributes outside its state_dict (schedules, counters, λ, snapshots)."""
    return {k: copy.deepcopy(v) for k, v in vars(algorithm).items() if k not in _MODULE_INTERNALS and _plain(v)}


_MODULE_INTERNALS = set(vars(torch.nn.Module())) | {"training"}


def minibatches(data: SequenceBatch, batch_size: int, generator: torch.Generator) -> Iterator[SequenceBatch]:
    """One shuffled epoch of minibatches (the last one may be smaller)."""
    order = torch.randperm(data.batch_size, generator=generator)
    for start in range(0, data.batch_size, batch_size):
        yield data.index(order[start : start + batch_size].to(data.device))


def default_evaluate(valid: SequenceBatch) -> Callable[[Any], dict[str, float]]:
    """Validation CE of the policy, and, for algorithms with a reward, ``valid_reward``: the
    reward of the greedy decodes against the validation references (the reward's corpus score
    where it has one, e.g. corpus BLEU; else the mean of its sentence scores)."""

    def evaluate(algorithm) -> dict[str, float]:
        policy = algorithm.policy
        scores = {"valid_ce": cross_entropy(policy, valid)}
        reward = getattr(algorithm, "reward", None)
        if reward is not None:
            scores["valid_reward"] = reward_score(reward, policy, valid)
        return scores

    return evaluate


@torch.no_grad()
def reward_score(reward, policy, data: SequenceBatch) -> float:
    """The reward of ``policy``'s greedy decodes against ``data``'s references (one decode per
    source; an unconditional policy's mode against every reference)."""
    from .rewards.base import compute_reward

    data = data.to(policy.device)
    count = 1 if data.context is not None else data.batch_size
    hyps = policy.greedy(count, data.context).batch.with_context(None)
    refs = data.with_context(None)
    corpus = getattr(reward, "corpus_score", None)
    if corpus is not None:
        return float(corpus(hyps, refs))
    return float(compute_reward(reward, hyps, refs).mean())


def _optimizers(algorithm, config: FitConfig) -> list[tuple[str, torch.optim.Optimizer, list, float | None]]:
    """One Adam per parameter group of the algorithm, with its clipping threshold."""
    out: list[tuple[str, torch.optim.Optimizer, list, float | None]] = []
    names = set()
    for group in algorithm.param_groups():
        if group.name in names:
            raise ValueError(f"{algorithm.name}: parameter group {group.name!r} appears twice")
        names.add(group.name)
        params = [p for p in group.params if p.requires_grad]
        if not params:
            continue
        lr = config.lr if group.lr is None else group.lr
        decay = config.weight_decay if group.weight_decay is None else group.weight_decay
        clip = config.clip_grad_norm if group.clip_grad_norm == "fit" else group.clip_grad_norm
        out.append((group.name, torch.optim.Adam(params, lr=lr, weight_decay=decay), params, clip))
    if not out:
        raise ValueError(f"algorithm {algorithm.name!r} has no trainable parameters")
    return out


def _set_group_lrs(algorithm, optimizers, step: int, metrics: dict[str, float]) -> None:
    """Write ``algorithm.group_lr(step)`` into the named groups' Adams (and ``lr_<group>`` into ``metrics``)."""
    hook = getattr(algorithm, "group_lr", None)
    rates = hook(step) if hook is not None else {}
    if not rates:
        return
    by_name = {name: optimizer for name, optimizer, _, _ in optimizers}
    for name, lr in rates.items():
        if name not in by_name:
            if name in {g.name for g in algorithm.param_groups()}:
                continue  # a group with no trainable parameters has no optimizer
            raise ValueError(f"{algorithm.name}.group_lr names an unknown parameter group {name!r}; "
                             f"known: {sorted(by_name)}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            raise ValueError(f"{algorithm.name}.group_lr gave group {name!r} the learning rate {lr!r} (need ≥ 0)")
        for group in by_name[name].param_groups:
            group["lr"] = float(lr)
        metrics[f"lr_{name}"] = float(lr)


def _check_config(config: FitConfig) -> None:
    validate_fields(config, "FitConfig")
    for name in ("max_epochs", "max_steps", "batch_size", "eval_every"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"FitConfig.{name} must be ≥ 1, got {value}")
    if config.clip_grad_norm is not None and not config.clip_grad_norm > 0:
        raise ValueError(f"FitConfig.clip_grad_norm must be > 0 or None, got {config.clip_grad_norm}")
    if config.state_every is not None and config.state_every < 1:
        raise ValueError(f"FitConfig.state_every must be ≥ 1 or None, got {config.state_every}")
    if not config.lr >= 0:
        raise ValueError(f"FitConfig.lr must be ≥ 0, got {config.lr}")
    if config.patience is not None and config.patience < 1:
        raise ValueError(f"FitConfig.patience must be ≥ 1 or None, got {config.patience}")


def fit(
    algorithm,
    train: SequenceBatch | None = None,
    *,
    valid: SequenceBatch | None = None,
    config: FitConfig | None = None,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    monitor: str = "valid_ce",
    mode: Literal["min", "max"] = "min",
    callbacks: Sequence[Callback] = (),
    resume_from: str | Path | None = None,
) -> FitResult:
    """Train ``algorithm`` in place; return its history.

    ``algorithm.setup(train)`` runs first and gives the data to train on. ``evaluate(algorithm) →
    {metric: value}`` runs every ``eval_every`` steps (default: :func:`default_evaluate` on
    ``valid``); ``monitor`` picks the metric for early stopping and best-weight restore
    (an :class:`EarlyStopping` callback), minimised or maximised per ``mode``; it skips evaluations made
    while ``algorithm.monitor_ready()`` is False. Each parameter group of ``algorithm.param_groups()`` gets
    its own Adam and gradient clipping; before every step ``algorithm.group_lr(step)`` may set groups'
    learning rates (recorded as ``lr_<group>`` in the step's metrics).

    With ``config.state_path`` the whole training state is saved periodically and on Ctrl-C (which then
    raises :class:`TrainingInterrupted`); ``resume_from=`` that file continues the run bit-identically
    (same config and data; user callbacks keep no state across the resume).
    """
    config = config or FitConfig()
    early = EarlyStopping(monitor, mode, config.patience, config.restore_best)
    needed = tuple(getattr(getattr(algorithm, "requires", None), "monitors", ()))
    if needed and evaluate is None and valid is None:
        raise ValueError(f"algorithm {algorithm.name!r} reacts to the evaluation metrics {list(needed)}: "
                         "pass valid=<batch> or evaluate=<function returning them>")
    if resume_from is not None and not Path(resume_from).is_file():
        raise FileNotFoundError(f"resume_from: no training state at {resume_from}")
    device = resolve_device(config.device)
    generator = seed_everything(config.seed)
    algorithm.to(device)
    algorithm.train()
    if train is not None:
        train = train.to(device)
    train = algorithm.setup(train)
    check_vocab(getattr(algorithm, "policy", None), train, "the training data")
    check_vocab(getattr(algorithm, "policy", None), valid, "the validation data")
    uses_data = algorithm.uses_data
    if uses_data and (train is None or train.batch_size == 0):
        raise BatchError(f"algorithm {algorithm.name!r} trains on data: pass a non-empty training batch")
    if not uses_data and config.max_steps is None:
        raise ValueError(f"algorithm {algorithm.name!r} samples its own data: set max_steps")
    if config.max_steps is None and config.max_epochs is None:
        raise ValueError("set max_steps or max_epochs")
    if train is not None:
        train = train.to(device)
    inputs = run_inputs(algorithm, train, {k: getattr(config, k) for k in _LOOP_KEYS})
    saved = load_training_state(resume_from, inputs) if resume_from is not None else None
    if evaluate is None and valid is not None:
        evaluate = default_evaluate(valid.to(device))
    optimizers = _optimizers(algorithm, config)
    steps_per_epoch = math.ceil(train.batch_size / config.batch_size) if uses_data and train is not None else None
    eval_every = config.eval_every or steps_per_epoch or 100
    total = config.max_steps
    if total is None and steps_per_epoch is not None and config.max_epochs is not None:
        total = steps_per_epoch * config.max_epochs
    elif total is not None and steps_per_epoch is not None and config.max_epochs is not None:
        total = min(total, steps_per_epoch * config.max_epochs)
    state = FitState()
    position: dict[str, Any] = {"epoch_rng": generator.get_state(), "batch": 0}
    """Where the data stream is: the shuffling generator at the epoch's start and batches done in it."""
    if saved is not None:
        _restore(saved, algorithm, optimizers, early, state, position)
        generator.set_state(position["epoch_rng"])
    all_callbacks: list[Callback] = [early, *callbacks] if evaluate is not None else list(callbacks)
    from .tracking import loggers_for  # here, not at the top: tracking imports this module

    all_callbacks += loggers_for(config, algorithm.name, resumed_at=state.step if saved is not None else None)
    started = time.perf_counter()
    bar = tqdm(total=total, initial=state.step, disable=config.progress is not True, desc=algorithm.name,
               leave=False, dynamic_ncols=True)

    def batches() -> Iterator[SequenceBatch | None]:
        skip = position["batch"]  # a resumed run skips the batches its epoch already used
        while True:
            if uses_data:
                assert train is not None
                position["epoch_rng"] = generator.get_state()
                for i, batch in enumerate(minibatches(train, config.batch_size, generator)):
                    if i >= skip:
                        position["batch"] = i + 1
                        yield batch
                skip, position["batch"] = 0, 0
                state.epoch += 1
            else:
                yield None

    def save_state() -> Path | None:
        if config.state_path is None:
            return None
        return save_training_state(Path(config.state_path),
                                   _training_payload(algorithm, inputs, optimizers, early, state, position))

    def evaluation() -> None:
        assert evaluate is not None
        algorithm.eval()
        scores = evaluate(algorithm)
        algorithm.train()
        missing = [m for m in needed if m not in scores]
        if missing:
            raise KeyError(f"algorithm {algorithm.name!r} reacts to {missing}, which the evaluation does not "
                           f"produce (it gives {sorted(scores)})")
        state.metrics.update(scores)
        state.history.append(dict(state.metrics))
        algorithm.on_evaluation(state.step, scores)
        if monitor in scores:
            bar.set_postfix({monitor: f"{scores[monitor]:.4g}"})
        if config.progress == "lines":
            shown = ", ".join(f"{k}={v:.4g}" for k, v in scores.items() if isinstance(v, (int, float)))
            print(f"{algorithm.name}: step {state.step}/{total if total is not None else '?'} "
                  f"(epoch {state.epoch}) {shown} at {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
        for cb in all_callbacks:
            cb.on_evaluation(algorithm, state)

    interrupted = InterruptFlag()
    try:
        if evaluate is not None and config.evaluate_at_start and saved is None:
            state.metrics = {"step": 0}
            evaluation()
        for batch in batches():
            if state.stop or (total is not None and state.step >= total):
                break
            rollout = algorithm.collect(batch)
            loss, metrics = algorithm.loss(rollout)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{algorithm.name}: loss became {float(loss.detach())} at step {state.step}"
                                         f"{plugin_notes(algorithm)}")
            for _, optimizer, _, _ in optimizers:
                optimizer.zero_grad(set_to_none=True)
            _set_group_lrs(algorithm, optimizers, state.step, metrics)
            loss.backward()
            for i, (group, optimizer, params, clip) in enumerate(optimizers):
                if clip is not None:
                    norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                    metrics["grad_norm" if i == 0 else f"grad_norm_{group}"] = norm
                optimizer.step()
            state.step += 1
            algorithm.on_step_end(state.step)
            state.metrics = {"step": state.step, "loss": float(loss.detach()), **metrics}
            for cb in all_callbacks:
                cb.on_step_end(algorithm, state)
            bar.update(1)
            evaluated = state.step % eval_every == 0
            if evaluated:
                if evaluate is not None:
                    evaluation()
                else:
                    algorithm.on_evaluation(state.step, {})  # proposal swaps, schedules: even with no metric
                    for cb in all_callbacks:
                        cb.on_evaluation(algorithm, state)
            if interrupted.raised:
                raise TrainingInterrupted(state.step, save_state(), interrupted.signum)
            if config.state_every is not None and state.step % config.state_every == 0 or \
                    config.state_every is None and evaluated:
                save_state()
    finally:
        interrupted.restore()
        bar.close()
    algorithm.eval()
    for cb in all_callbacks:
        cb.on_fit_end(algorithm, state)
    if config.checkpoint:
        save_checkpoint(config.checkpoint, algorithm.policy, {"algorithm": algorithm.name, "fit": vars(config)})
    best = early.best if state.history else math.nan
    return FitResult(state.history, best, early.best_step, state.step, time.perf_counter() - started)


_LOOP_KEYS = ("seed", "batch_size", "lr", "weight_decay", "clip_grad_norm", "eval_every")
"""FitConfig fields a resumed run must share with the saved one (the budget may grow)."""


def _training_payload(algorithm, inputs: dict[str, Any], optimizers, early: EarlyStopping, state: FitState,
                      position: dict[str, Any]) -> dict[str, Any]:
    """The whole training state, as data (see :mod:`seqrl.checkpoint`)."""
    return {
        "inputs": inputs,
        "algorithm": {k: v.detach().cpu().clone() for k, v in algorithm.state_dict().items()},
        "attributes": algorithm_attributes(algorithm),
        "optimizers": [opt.state_dict() for _, opt, _, _ in optimizers],
        "early_stopping": early.state_dict(),
        "state": {"step": state.step, "epoch": state.epoch, "history": state.history, "metrics": state.metrics},
        "position": position,
        "rng": rng_state(),
    }


def _restore(saved: dict[str, Any], algorithm, optimizers, early: EarlyStopping, state: FitState,
             position: dict[str, Any]) -> None:
    algorithm.load_state_dict(saved["algorithm"])
    for key, value in saved["attributes"].items():
        setattr(algorithm, key, value)
    if len(saved["optimizers"]) != len(optimizers):
        raise ValueError("resume: the saved state has another number of parameter groups")
    for (_, opt, _, _), opt_state in zip(optimizers, saved["optimizers"]):
        opt.load_state_dict(opt_state)
    early.load_state_dict(saved["early_stopping"])
    s = saved["state"]
    state.step, state.epoch, state.history, state.metrics = s["step"], s["epoch"], s["history"], s["metrics"]
    position.update(saved["position"])
    set_rng_state(saved["rng"])


# --- checkpoints: seqrl.checkpoint (re-exported here) ---
