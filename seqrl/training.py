"""The one training loop, :func:`fit`: it feeds data, evaluates, stops early, checkpoints and logs.

Everything an algorithm does to learn (sampling, losses, optimizers, clipping, phases, schedules, target networks,
proposal swaps) is in its :meth:`~seqrl.algorithms.Algorithm.update`; the loop calls it once per step with a
minibatch (or ``None``, for an algorithm that draws its own samples) and never reaches inside.

Evaluation runs every ``eval_every`` steps and always after the last step. What :func:`fit` leaves in the
algorithm is explicit: the last weights (``keep="last"``, the default) or the best evaluated ones by the monitored
metric (``keep="best"``: by default the reward on validation for algorithms that optimize one, validation CE
otherwise); :class:`FitResult` says which, and from which step.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from .callbacks import Callback, FitState
from .checkpoint import (
    load_checkpoint,  # noqa: F401  (re-exported: seqrl.training.load_checkpoint)
    load_training_state,
    rank_state_path,
    rng_state,
    run_inputs,
    save_checkpoint,
    save_training_state,
    set_rng_state,
)
from .config import SettingError, validate_fields
from .distributed import any_rank, broadcast_state, mean_metrics, rank_seed, shard, share, world
from .interrupts import Interrupted, InterruptFlag
from .metrics import cross_entropy, prompt_scores, reward_score
from .registry import plugin_notes
from .tracking import loggers_for
from .types import BatchError, SequenceBatch, check_vocab
from .utils import resolve_device, seed_everything

DIRECTIONS: dict[str, Literal["min", "max"]] = {"valid_ce": "min", "valid_reward": "max", "valid_bleu": "max",
                                                "kl_p_pi": "min", "valid_kl_p_pi": "min"}
"""The direction of the evaluation metrics seqrl's evaluations produce (others need ``FitConfig.mode``)."""


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Settings of the loop only: how long, how often to evaluate, what to keep, where to write. How an algorithm
    learns (lr, clipping, batch size) is in its own ``Config``."""

    max_epochs: int | None = None
    """Passes over the training data (data algorithms). With neither this nor ``max_steps``: 100 epochs."""
    max_steps: int | None = None
    """Optimizer steps; required for algorithms that draw their own samples. Never capped by a default: the run
    stops at whichever of ``max_steps`` and ``max_epochs`` the user gave comes first."""
    eval_every: int | None = None
    """Steps between evaluations (default: one epoch, or 100 steps without data); one also runs after the last."""
    monitor: str | None = None
    """The evaluation metric that ranks evaluations (early stopping, ``keep="best"``); default: the algorithm's
    own (``valid_reward`` for reward algorithms, else ``valid_ce``)."""
    mode: Literal["min", "max"] | None = None
    """Whether lower or higher ``monitor`` is better (default: known for seqrl's metrics)."""
    patience: int | None = None
    """Ranked evaluations without improvement before stopping ([DPG]: 8); None never stops early."""
    keep: Literal["last", "best"] = "last"
    """The weights fit leaves in the algorithm: the last step's, or the best ranked evaluation's."""
    evaluate_at_start: bool = False
    """Also evaluate the initial weights (step 0): with ``keep="best"``, fine-tuning then never returns a policy
    worse on the monitor than the one it started from."""
    device: str = "auto"
    seed: int = 0
    progress: bool | Literal["lines"] = True
    """True: a tqdm progress bar; ``"lines"``: one plain line per evaluation on stderr (a log that is not a
    terminal: it shows the run is alive without a bar's carriage returns); False: nothing."""
    log_every: int = 1
    """Steps between logged steps: the step's metrics leave the device (one host sync), are checked for a
    non-finite loss and go to ``on_step_end`` callbacks and ``metrics.csv``. Raise it on a GPU."""
    checkpoint: str | None = None
    """Path to save the final policy (the one ``keep`` chose) to."""
    state_path: str | None = None
    """Path of the full training state (weights, optimizers, RNGs, early stopping, data position,
    history), written atomically every ``state_every`` steps and on Ctrl-C or SIGTERM; ``fit(resume_from=…)``
    continues from it bit-identically."""
    state_every: int | None = None
    """Steps between training-state saves (default: at every evaluation)."""
    log_dir: str | None = None
    """Folder of ``metrics.csv``: one row per logged step (loss, every reported metric, evaluation metrics on
    the steps evaluated); see :mod:`seqrl.tracking`."""
    tensorboard_dir: str | None = None
    """Folder of TensorBoard events of the same scalars (needs ``seqrl[tensorboard]``)."""

    def __post_init__(self) -> None:
        validate_fields(self, "FitConfig")
        if not 0 <= self.seed < 2**63:
            raise SettingError(f"FitConfig.seed must be in [0, 2**63), got {self.seed}", "seed")
        if self.device.strip().lower() != "auto":
            try:
                kind = torch.device(self.device.strip().lower()).type
            except RuntimeError:
                kind = None
            if kind not in ("cpu", "cuda"):
                raise SettingError(f"unknown device {self.device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'",
                                   "device")
        for name in ("max_epochs", "max_steps", "eval_every", "patience", "state_every", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SettingError(f"FitConfig.{name} must be ≥ 1, got {value}", name)


@dataclass
class FitResult:
    """What :func:`fit` did: its evaluations, and which weights it left in the algorithm."""

    history: list[dict[str, float]]
    steps: int
    epochs: int
    wall_s: float
    monitor: str | None
    """The metric that ranked the evaluations (None when nothing was evaluated)."""
    mode: str | None
    best: float
    """The monitored metric at the best ranked evaluation (NaN when nothing was ranked)."""
    best_step: int
    kept: Literal["last", "best"]
    kept_step: int
    """The step whose weights the algorithm holds now."""
    final: dict[str, float] = field(default_factory=dict)
    """The last evaluation's metrics (after the last step)."""

    def describe(self) -> str:
        """One line: which weights were kept and why."""
        if self.kept == "best":
            return f"kept the best weights by {self.monitor} ({self.mode}): step {self.kept_step}, {self.best:.6g}"
        return f"kept the last weights (step {self.kept_step})"


class TrainingInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during :func:`fit`; ``saved`` is the training-state file written first (or None)."""

    def __init__(self, step: int, saved: Path | None, signum: int = 2) -> None:
        where = f"; state saved to {saved} (resume with resume_from=…)" if saved else ""
        what = "interrupted" if signum == 2 else "terminated"
        super().__init__(f"training {what} at step {step}{where}", signum)
        self.step, self.saved = step, saved


# --- the loop's parts ---------------------------------------------------------------------------------------------
class Ranking(Callback):
    """Ranks evaluations by ``monitor``: remembers the best (its weights when ``keep_best``), stops after
    ``patience`` ranked evaluations without improvement. Evaluations made while ``algorithm.monitor_ready()`` is
    False (a phase that trains only a critic) are not ranked."""

    def __init__(self, monitor: str, mode: Literal["min", "max"], patience: int | None, keep_best: bool) -> None:
        self.monitor, self.mode, self.patience, self.keep_best = monitor, mode, patience, keep_best
        self.sign = 1.0 if mode == "min" else -1.0
        self.best_value = math.inf  # sign-adjusted: lower is better
        self.best_step = 0
        self.evals_since_best = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    @property
    def best(self) -> float:
        return self.sign * self.best_value if self.best_value < math.inf else math.nan

    def on_evaluation(self, algorithm: Any, state: FitState) -> None:
        if self.monitor not in state.metrics:
            raise KeyError(f"monitor {self.monitor!r} not among evaluation metrics {sorted(state.metrics)}")
        if not algorithm.monitor_ready():
            return  # the monitored policy has not been trained since the last ranked evaluation
        raw = state.metrics[self.monitor]
        if not math.isfinite(raw):
            raise FloatingPointError(f"evaluation returned {self.monitor} = {raw} at step {state.step}: "
                                     "it cannot be ranked")
        value = self.sign * raw
        if value < self.best_value:
            self.best_value, self.best_step, self.evals_since_best = value, state.step, 0
            if self.keep_best:
                self.best_weights = {k: v.detach().cpu().clone() for k, v in algorithm.state_dict().items()}
        else:
            self.evals_since_best += 1
            if self.patience is not None and self.evals_since_best >= self.patience:
                state.stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step, "evals_since_best": self.evals_since_best,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.evals_since_best, self.best_weights = state["evals_since_best"], state["best_weights"]


class DataStream:
    """Shuffled minibatches, epoch after epoch, from a generator seeded by the run; its position (the generator at
    the epoch's start and the batches done in it) is saved with the training state, so a resumed run continues
    the very same sequence of batches. Algorithms without data get ``None`` forever."""

    def __init__(self, data: SequenceBatch | None, batch_size: int | None, generator: torch.Generator) -> None:
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self.position: dict[str, Any] = {"epoch_rng": generator.get_state(), "batch": 0, "epoch": 0}

    @property
    def steps_per_epoch(self) -> int | None:
        if self.data is None or not self.batch_size:
            return None
        return math.ceil(self.data.batch_size / self.batch_size)

    def restore(self, position: dict[str, Any]) -> None:
        self.position.update(position)
        self.generator.set_state(self.position["epoch_rng"])

    def __iter__(self) -> Iterator[SequenceBatch | None]:
        if self.data is None or not self.batch_size:
            while True:
                yield None
        skip = self.position["batch"]  # a resumed run skips the batches its epoch already used
        while True:
            self.position["epoch_rng"] = self.generator.get_state()
            order = torch.randperm(self.data.batch_size, generator=self.generator)
            for i, start in enumerate(range(0, self.data.batch_size, self.batch_size)):
                if i >= skip:
                    self.position["batch"] = i + 1
                    # several processes: the same order on every rank, each taking its rows of the minibatch
                    yield shard(self.data.index(order[start : start + self.batch_size].to(self.data.device)))
            skip, self.position["batch"] = 0, 0
            self.position["epoch"] += 1


def minibatches(data: SequenceBatch, batch_size: int, generator: torch.Generator) -> Iterator[SequenceBatch]:
    """One shuffled epoch of minibatches (the last one may be smaller)."""
    order = torch.randperm(data.batch_size, generator=generator)
    for start in range(0, data.batch_size, batch_size):
        yield data.index(order[start : start + batch_size].to(data.device))


def default_evaluate(valid: SequenceBatch) -> Callable[[Any], dict[str, float]]:
    """Validation CE of the policy, and, for algorithms with a reward, ``valid_reward``: the
    reward of the greedy decodes against the validation references (the reward's corpus score
    where it has one, e.g. corpus BLEU; else the mean of its sentence scores)."""

    def evaluate(algorithm: Any) -> dict[str, float]:
        scores = {"valid_ce": cross_entropy(algorithm.policy, valid)}
        reward = getattr(algorithm, "reward", None)
        if reward is not None:
            scores["valid_reward"] = reward_score(reward, algorithm.policy, valid)
        return scores

    return evaluate


def prompt_evaluate(prompts: SequenceBatch, per_prompt: int = 16) -> Callable[[Any], dict[str, float]]:
    """The evaluation of a prompted run: :func:`~seqrl.metrics.prompt_scores` of the policy's completions of the
    validation prompts, under the algorithm's reward (``valid_reward``) or its potential (``valid_kl_p_pi``)."""

    def evaluate(algorithm: Any) -> dict[str, float]:
        return prompt_scores(algorithm.policy, prompts, reward=getattr(algorithm, "reward", None),
                             potential=getattr(algorithm, "potential", None), per_prompt=per_prompt)

    return evaluate


class Progress(Callback):
    """A tqdm bar (``progress=True``), one plain line per evaluation on stderr (``"lines"``), or nothing."""

    def __init__(self, mode: bool | str, name: str, total: int, initial: int, monitor: str | None) -> None:
        self.mode, self.name, self.total, self.monitor = mode, name, total, monitor
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, initial=initial, disable=mode is not True, desc=name, leave=False,
                        dynamic_ncols=True)

    def step(self) -> None:
        self.bar.update(1)

    def on_evaluation(self, algorithm: Any, state: FitState) -> None:
        if self.monitor in state.metrics:
            self.bar.set_postfix({self.monitor: f"{state.metrics[self.monitor]:.4g}"})
        if self.mode == "lines":
            shown = ", ".join(f"{k}={v:.4g}" for k, v in state.history[-1].items() if k != "step")
            print(f"{self.name}: step {state.step}/{self.total} (epoch {state.epoch}) {shown} at "
                  f"{time.perf_counter() - self.started:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


@dataclass
class _Run:
    """One fit's moving parts, set up by :func:`_prepare`."""

    algorithm: Any
    config: FitConfig
    stream: DataStream
    total: int
    eval_every: int
    evaluate: Callable[[Any], dict[str, float]] | None
    ranking: Ranking | None
    callbacks: list[Callback]
    inputs: dict[str, Any]
    state: FitState = field(default_factory=FitState)

    def save(self) -> Path | None:
        if self.config.state_path is None:
            return None
        state, path, rank = self.state, Path(self.config.state_path), world().rank
        if rank > 0:  # the other ranks' own random streams, beside rank 0's full state
            save_training_state(rank_state_path(path, rank), {"inputs": self.inputs, "step": state.step,
                                                             "rng": rng_state()})
            return path
        return save_training_state(path, {
            "inputs": self.inputs, "algorithm": self.algorithm.training_state(),
            "ranking": self.ranking.state_dict() if self.ranking is not None else None,
            "loop": {"step": state.step, "epoch": state.epoch, "history": state.history, "metrics": state.metrics},
            "position": self.stream.position, "rng": rng_state()})

    def restore(self, saved: dict[str, Any], path: Path) -> None:
        self.algorithm.load_training_state(saved["algorithm"])
        if self.ranking is not None and saved["ranking"] is not None:
            self.ranking.load_state_dict(saved["ranking"])
        loop = saved["loop"]
        for key in ("step", "epoch"):  # a hand-edited state must not start the loop before step 0
            if type(loop.get(key)) is not int or loop[key] < 0:
                raise ValueError(f"resume: {path} records {key}={loop.get(key)!r}; expected an integer ≥ 0")
        self.state.step, self.state.epoch = loop["step"], loop["epoch"]
        self.state.history, self.state.metrics = loop["history"], loop["metrics"]
        self.stream.restore(saved["position"])
        rank = world().rank
        if rank > 0:
            own = load_training_state(rank_state_path(path, rank), self.inputs)
            if own["step"] != self.state.step:
                raise ValueError(f"resume: {rank_state_path(path, rank)} is from step {own['step']}, the training "
                                 f"state from step {self.state.step}")
            saved = own
        set_rng_state(saved["rng"])

    def add_loggers(self, resumed: bool) -> None:
        if world().main:
            self.callbacks += loggers_for(self.config, self.algorithm.name,
                                          resumed_at=self.state.step if resumed else None)

    def evaluation(self) -> None:
        state = self.state
        if self.evaluate is None:
            return
        self.algorithm.eval()
        scores = {k: float(v) for k, v in self.evaluate(self.algorithm).items()}
        self.algorithm.train()
        state.metrics = {**state.metrics, "step": state.step, **scores}
        state.history.append(dict(state.metrics))  # the step's training metrics too (curves read critic losses)
        for cb in self.callbacks:
            cb.on_evaluation(self.algorithm, state)

    def log_step(self, metrics: dict[str, Any]) -> None:
        numbers = mean_metrics({k: float(v) for k, v in metrics.items()})  # the step's only host sync
        if not math.isfinite(numbers.get("loss", 0.0)):
            raise FloatingPointError(f"{self.algorithm.name}: loss became {numbers['loss']} at step "
                                     f"{self.state.step}{plugin_notes(self.algorithm)}")
        self.state.metrics = {"step": self.state.step, **numbers}
        for cb in self.callbacks:
            cb.on_step_end(self.algorithm, self.state)

    def finish(self, wall_s: float) -> FitResult:
        ranking, state, algorithm = self.ranking, self.state, self.algorithm
        kept_step, kept = state.step, self.config.keep
        if kept == "best" and ranking is not None and ranking.best_weights is not None:
            algorithm.load_state_dict(ranking.best_weights)
            kept_step = ranking.best_step
        for cb in self.callbacks:
            cb.on_fit_end(algorithm, state)
        if self.config.checkpoint:
            save_checkpoint(self.config.checkpoint, algorithm.policy,
                            {"algorithm": algorithm.name, "kept": kept, "kept_step": kept_step})
        return FitResult(state.history, state.step, state.epoch, wall_s, ranking.monitor if ranking else None,
                         ranking.mode if ranking else None, ranking.best if ranking else math.nan,
                         ranking.best_step if ranking else 0, kept, kept_step,
                         dict(state.history[-1]) if state.history else {})


def _budget(algorithm: Any, config: FitConfig, stream: DataStream) -> int:
    """The steps the run gets: ``max_steps``, else ``max_epochs`` (100 by default) passes over the data; both
    given: whichever ends first."""
    per_epoch = stream.steps_per_epoch
    if per_epoch is None:
        if config.max_steps is None:
            raise ValueError(f"algorithm {algorithm.name!r} samples its own data: set max_steps")
        return config.max_steps
    epochs = config.max_epochs if config.max_epochs is not None else (None if config.max_steps else 100)
    by_epochs = per_epoch * epochs if epochs is not None else None
    return min(x for x in (config.max_steps, by_epochs) if x is not None)


def _prepare(algorithm: Any, train: SequenceBatch | None, valid: SequenceBatch | None, config: FitConfig,
             evaluate: Callable[[Any], dict[str, float]] | None, callbacks: Sequence[Callback]) -> _Run:
    """Device, seed, data (the algorithm's ``setup``), budget, evaluation, ranking and loggers, all checked."""
    for what, batch in (("train", train), ("valid", valid)):
        if batch is not None and not isinstance(batch, SequenceBatch):
            raise TypeError(f"fit: {what} must be a SequenceBatch (or None), got {type(batch).__name__}")
    if not world().main:  # several processes: rank 0 alone writes outputs and shows progress
        config = replace(config, checkpoint=None, log_dir=None, tensorboard_dir=None, progress=False)
    device = resolve_device(config.device)
    if any(p.is_meta for p in algorithm.parameters()):  # torch would fail in .to() with a NotImplementedError
        raise ValueError("fit: the algorithm's modules have parameters on the 'meta' device (shapes without "
                         "values); materialize them (e.g. Module.to_empty, then load weights) before training")
    generator = seed_everything(config.seed)  # the data order: one stream, the same on every rank
    algorithm.to(device).train()
    processes = world()
    if processes.size > 1:
        seed_everything(rank_seed(config.seed, processes.rank))  # sampling and dropout: each rank its own stream
        broadcast_state(algorithm)
        if algorithm.uses_data and algorithm.batch_size:
            share(algorithm.batch_size, f"{algorithm.name}: batch_size")
    train = algorithm.setup(train.to(device) if train is not None else None)
    check_vocab(algorithm.policy, train, "the training data")
    check_vocab(algorithm.policy, valid, "the validation data")
    if algorithm.uses_data and (train is None or train.batch_size == 0):
        raise BatchError(f"algorithm {algorithm.name!r} trains on data: pass a non-empty training batch")
    stream = DataStream(train.to(device) if train is not None and algorithm.uses_data else None,
                        algorithm.batch_size, generator)
    total = _budget(algorithm, config, stream)
    evaluate = evaluate or (default_evaluate(valid.to(device)) if valid is not None else None)
    if config.keep == "best" and evaluate is None:
        raise ValueError("keep='best' ranks evaluations: pass valid=<batch> or evaluate=<function>")
    ranking = None
    if evaluate is not None:
        monitor = config.monitor or algorithm.monitor[0]
        mode = config.mode or DIRECTIONS.get(monitor) or (algorithm.monitor[1] if monitor == algorithm.monitor[0]
                                                          else None)
        if mode is None:
            raise ValueError(f"monitor {monitor!r}: say whether lower or higher is better (FitConfig.mode)")
        ranking = Ranking(monitor, mode, config.patience, config.keep == "best")
    inputs = run_inputs(algorithm, train, {"seed": config.seed, "eval_every": config.eval_every,
                                           "processes": processes.size})
    return _Run(algorithm, config, stream, total, config.eval_every or stream.steps_per_epoch or 100, evaluate,
                ranking, [*([ranking] if ranking else []), *callbacks], inputs)


def fit(algorithm: Any, train: SequenceBatch | None = None, *, valid: SequenceBatch | None = None,
        config: FitConfig | None = None, evaluate: Callable[[Any], dict[str, float]] | None = None,
        callbacks: Sequence[Callback] = (), resume_from: str | Path | None = None) -> FitResult:
    """Train ``algorithm`` in place for ``config``'s budget and return what happened (:class:`FitResult`).

    Each step is ``algorithm.update(batch)``. ``evaluate(algorithm) → {metric: value}`` (default: validation CE,
    and the reward for reward algorithms, on ``valid``) runs every ``eval_every`` steps and after the last one.
    With ``config.state_path`` the training state is saved at every evaluation and on Ctrl-C or SIGTERM (which
    then raise :class:`TrainingInterrupted`); ``resume_from=`` continues such a run bit-identically, and refuses
    a state made from other data, settings, policy or seqrl version."""
    config = config or FitConfig()
    if resume_from is not None and not Path(resume_from).is_file():
        raise FileNotFoundError(f"resume_from: no training state at {resume_from}")
    run = _prepare(algorithm, train, valid, config, evaluate, callbacks)
    config, state, started = run.config, run.state, time.perf_counter()
    if resume_from is not None:
        run.restore(load_training_state(resume_from, run.inputs), Path(resume_from))
    run.add_loggers(resumed=resume_from is not None)
    progress = Progress(config.progress, algorithm.name, run.total, state.step,
                        run.ranking.monitor if run.ranking else None)
    run.callbacks.append(progress)
    interrupted = InterruptFlag()
    try:
        if config.evaluate_at_start and resume_from is None:
            run.evaluation()
        for batch in run.stream:
            if state.stop or state.step >= run.total:
                break
            metrics = algorithm.update(batch)
            state.step, state.epoch = state.step + 1, run.stream.position["epoch"]
            if state.step % config.log_every == 0 or state.step == run.total:
                run.log_step(metrics)
            progress.step()
            evaluated = state.step % run.eval_every == 0 or state.step == run.total
            if evaluated:
                run.evaluation()
            if any_rank(interrupted.raised):
                raise TrainingInterrupted(state.step, run.save(), interrupted.signum)
            if (config.state_every and state.step % config.state_every == 0) or (not config.state_every and evaluated):
                run.save()
        if state.stop and (not state.history or state.history[-1]["step"] != state.step):
            run.evaluation()  # stopped early between evaluations: the last step is evaluated too
    finally:
        interrupted.restore()
        progress.close()
    algorithm.eval()
    return run.finish(time.perf_counter() - started)


__all__ = ["Callback", "DataStream", "FitConfig", "FitResult", "FitState", "Ranking", "TrainingInterrupted",
           "default_evaluate", "fit", "prompt_evaluate", "load_checkpoint", "minibatches", "save_checkpoint"]
