"""The one training loop: every algorithm is driven by :func:`fit`.

Batches in (or none, for data-free algorithms), ``algorithm.collect`` → ``algorithm.loss``
→ backward → clip → step, evaluation on validation with early stopping and best-weight
restore, callbacks, a progress bar, checkpoints.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from .metrics import cross_entropy
from .types import BatchError, SequenceBatch, Vocab
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
    progress: bool = True
    """Show a tqdm progress bar."""
    checkpoint: str | None = None
    """Path to save the final (best) policy to."""


@dataclass
class FitState:
    """What callbacks see; setting ``stop = True`` ends training after the current step."""

    step: int = 0
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    best: float = math.inf
    best_step: int = 0
    evals_since_best: int = 0
    stop: bool = False


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best: float
    best_step: int
    steps: int
    wall_s: float


class Callback:
    """Override any of these; each gets the algorithm and the live :class:`FitState`."""

    def on_step_end(self, algorithm, state: FitState) -> None: ...

    def on_evaluation(self, algorithm, state: FitState) -> None: ...

    def on_fit_end(self, algorithm, state: FitState) -> None: ...


def minibatches(data: SequenceBatch, batch_size: int, generator: torch.Generator) -> Iterator[SequenceBatch]:
    """One shuffled epoch of minibatches (the last one may be smaller)."""
    order = torch.randperm(data.batch_size, generator=generator)
    for start in range(0, data.batch_size, batch_size):
        yield data.index(order[start : start + batch_size].to(data.device))


def _default_evaluate(valid: SequenceBatch) -> Callable[[Any], dict[str, float]]:
    def evaluate(algorithm) -> dict[str, float]:
        return {"valid_ce": cross_entropy(algorithm.policy, valid)}

    return evaluate


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
) -> FitResult:
    """Train ``algorithm`` in place; return its history.

    ``evaluate(algorithm) → {metric: value}`` runs every ``eval_every`` steps (default:
    CE on ``valid``); ``monitor`` picks the metric for early stopping and best-weight
    restore, minimised or maximised per ``mode``.
    """
    config = config or FitConfig()
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {config.batch_size}")
    uses_data = algorithm.uses_data
    if uses_data and (train is None or train.batch_size == 0):
        raise BatchError(f"algorithm {algorithm.name!r} trains on data: pass a non-empty training batch")
    if not uses_data and config.max_steps is None:
        raise ValueError(f"algorithm {algorithm.name!r} samples its own data: set max_steps")
    if config.max_steps is None and config.max_epochs is None:
        raise ValueError("set max_steps or max_epochs")
    device = resolve_device(config.device)
    generator = seed_everything(config.seed)
    algorithm.to(device)
    algorithm.train()
    if train is not None:
        train = train.to(device)
    if evaluate is None and valid is not None:
        evaluate = _default_evaluate(valid)
    params = [p for p in algorithm.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"algorithm {algorithm.name!r} has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(train.batch_size / config.batch_size) if uses_data and train is not None else None
    eval_every = config.eval_every or steps_per_epoch or 100
    total = config.max_steps
    if total is None and steps_per_epoch is not None and config.max_epochs is not None:
        total = steps_per_epoch * config.max_epochs
    elif total is not None and steps_per_epoch is not None and config.max_epochs is not None:
        total = min(total, steps_per_epoch * config.max_epochs)
    state = FitState()
    sign = 1.0 if mode == "min" else -1.0
    best_weights: dict[str, torch.Tensor] | None = None
    started = time.perf_counter()
    bar = tqdm(total=total, disable=not config.progress, desc=algorithm.name, leave=False, dynamic_ncols=True)

    def batches() -> Iterator[SequenceBatch | None]:
        while True:
            if uses_data:
                assert train is not None
                yield from minibatches(train, config.batch_size, generator)
                state.epoch += 1
            else:
                yield None

    def evaluation() -> None:
        nonlocal best_weights
        assert evaluate is not None
        algorithm.eval()
        scores = evaluate(algorithm)
        algorithm.train()
        state.metrics.update(scores)
        state.history.append(dict(state.metrics))
        algorithm.on_evaluation(state.step, scores)
        if monitor not in scores:
            raise KeyError(f"monitor {monitor!r} not among evaluation metrics {sorted(scores)}")
        value = sign * scores[monitor]
        if value < state.best:
            state.best, state.best_step, state.evals_since_best = value, state.step, 0
            if config.restore_best:
                best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in algorithm.state_dict().items()})
        else:
            state.evals_since_best += 1
            if config.patience is not None and state.evals_since_best >= config.patience:
                state.stop = True
        bar.set_postfix({monitor: f"{scores[monitor]:.4g}"})
        for cb in callbacks:
            cb.on_evaluation(algorithm, state)

    try:
        if evaluate is not None and config.evaluate_at_start:
            state.metrics = {"step": 0}
            evaluation()
        for batch in batches():
            if state.stop or (total is not None and state.step >= total):
                break
            rollout = algorithm.collect(batch)
            loss, metrics = algorithm.loss(rollout)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{algorithm.name}: loss became {float(loss.detach())} at step {state.step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm is not None:
                metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm))
            optimizer.step()
            state.step += 1
            algorithm.on_step_end(state.step)
            state.metrics = {"step": state.step, "loss": float(loss.detach()), **metrics}
            for cb in callbacks:
                cb.on_step_end(algorithm, state)
            bar.update(1)
            if evaluate is None and state.step % eval_every == 0:
                algorithm.on_evaluation(state.step, {})  # proposal swaps, schedules: even with no metric
                for cb in callbacks:
                    cb.on_evaluation(algorithm, state)
            if evaluate is not None and state.step % eval_every == 0:
                evaluation()
    finally:
        bar.close()
    if best_weights is not None:
        algorithm.load_state_dict(best_weights)
    algorithm.eval()
    for cb in callbacks:
        cb.on_fit_end(algorithm, state)
    if config.checkpoint:
        save_checkpoint(config.checkpoint, algorithm.policy, {"algorithm": algorithm.name, "fit": vars(config)})
    best = sign * state.best if state.history else math.nan
    return FitResult(state.history, best, state.best_step, state.step, time.perf_counter() - started)


# --- checkpoints ---------------------------------------------------------------------
def save_checkpoint(path: str | Path, policy, extra: dict[str, Any] | None = None) -> Path:
    """Save a policy's weights with everything needed to rebuild it (name, config, vocabs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source_vocab = getattr(policy, "source_vocab", None)
    torch.save(
        {
            "policy": policy.registry_name,
            "config": policy.extra_state(),
            "max_len": policy.max_len,
            "vocab": policy.vocab.state_dict(),
            "source_vocab": source_vocab.state_dict() if source_vocab is not None else None,
            "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
            "extra": extra or {},
        },
        path,
    )
    return path


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """Rebuild the policy saved by :func:`save_checkpoint` (weights loaded, eval mode)."""
    from .policies import make_policy

    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    vocab = Vocab.from_state_dict(ckpt["vocab"])
    source = Vocab.from_state_dict(ckpt["source_vocab"]) if ckpt["source_vocab"] else None
    config = dict(ckpt["config"])
    config.pop("cell", None)
    policy = make_policy(ckpt["policy"], vocab, ckpt["max_len"], source_vocab=source, **config)
    policy.load_state_dict(ckpt["state_dict"])
    return policy.to(resolve_device(device)).eval()
