"""The token-level gymnasium environment (the interoperable path).

One episode writes one sequence: each action is a token id, the observation holds the
prefix (and the source, for a conditional task), the reward of a step is the incremental
pay-off ΔR (dense) or R at the end (sparse), computed by the same reward objects as the
batched rollout. Terminated at EOS; truncated when the prefix holds ``max_len - 1``
symbols, where EOS is forced ([VAML/ERAC] Cor. 1) and the closing reward is paid.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from ..rewards.base import Reward, compute_reward, make_reward
from ..types import SequenceBatch
from .tasks import Task, make_task


class SequenceEnv(gym.Env[dict[str, np.ndarray], int | np.integer[Any]]):
    """Write a sequence token by token; rewards from a seqrl :class:`Reward`.

    Args:
        task: a :class:`Task` (or a registered task name, with ``task_kwargs``).
        reward: a :class:`Reward` or registered name; default: the task's.
        dense: reward ΔR every step (True) or R once at the end (False).
        split: the split episodes draw their reference (and source) from.
    Observation: ``{"prefix": int64[max_len]}`` padded with PAD (and ``"context":
    int64[S]`` for conditional tasks). Actions: token ids from EOS (2) to V−1 (PAD and BOS
    are never actions). ``info["action_mask"]`` marks the legal actions.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: Task | str = "motif",
        reward: Reward | str | None = None,
        *,
        dense: bool = True,
        split: str = "train",
        render_mode: str | None = None,
        reward_kwargs: dict[str, Any] | None = None,
        **task_kwargs: Any,
    ) -> None:
        if not isinstance(dense, bool | np.bool_):
            raise TypeError(f"dense={dense!r}: expected True (ΔR every step) or False (R at the end)")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}: expected None or one of {self.metadata['render_modes']}")
        self.task = make_task(task, **task_kwargs) if isinstance(task, str) else task
        vocab = self.task.vocab
        if self.task.max_len < 2:
            raise ValueError("an environment needs max_len ≥ 2 (one symbol plus EOS)")
        if reward is None or isinstance(reward, str):
            name = reward or self.task.default_reward
            kwargs = dict(self.task.reward_kwargs()) if name == self.task.default_reward else {}
            kwargs.update(reward_kwargs or {})
            reward = make_reward(name, vocab, **kwargs)
        self.reward = reward
        self.dense = dense
        self._split = split
        self.data = self.task.split(split)
        self.render_mode = render_mode
        self.max_len = self.task.max_len
        V = len(vocab)
        obs: dict[str, spaces.Space[Any]] = {"prefix": spaces.MultiDiscrete(np.full(self.max_len, V, dtype=np.int64))}
        if self.task.is_conditional:
            ctx = self.data.context
            assert ctx is not None and self.task.source_vocab is not None
            width, size = ctx.tokens.shape[1], len(self.task.source_vocab)
            obs["context"] = spaces.MultiDiscrete(np.full(width, size, dtype=np.int64))
        # gymnasium types a Dict space as Space[dict[str, Space]]; its samples are dicts of arrays.
        self.observation_space = spaces.Dict(obs)  # type: ignore[assignment]
        self.action_space = spaces.Discrete(V - vocab.eos, start=vocab.eos)
        self._mask = np.zeros(V, dtype=np.int8)
        self._mask[vocab.eos :] = 1
        self._prefix: list[int] = []
        self._index = 0
        self._last_total = 0.0
        self._done: bool | None = None  # None: never reset

    # --- helpers ---------------------------------------------------------------------
    def _reference(self) -> SequenceBatch | None:
        if not getattr(self.reward, "needs_reference", True):
            return None
        return self.data.index([self._index]).with_context(None)

    def _score(self, tokens: list[int]) -> float:
        """R(tokens + eos) with the batched reward code on a batch of one."""
        vocab = self.task.vocab
        closed = tokens if tokens and tokens[-1] == vocab.eos else tokens + [vocab.eos]
        batch = SequenceBatch.from_lists([closed], pad=vocab.pad)
        return float(compute_reward(self.reward, batch, self._reference())[0])

    def _obs(self) -> dict[str, np.ndarray]:
        prefix = np.full(self.max_len, self.task.vocab.pad, dtype=np.int64)
        prefix[: len(self._prefix)] = self._prefix
        obs = {"prefix": prefix}
        if self.task.is_conditional:
            ctx = self.data.context
            assert ctx is not None
            obs["context"] = ctx.tokens[self._index].numpy().astype(np.int64)
        return obs

    # --- gymnasium API ---------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"reset(options=…) takes a dict such as {{'index': 0}}, got {type(options).__name__}")
        unknown = sorted(set(options or ()) - {"index"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; the only option is 'index'")
        n = self.data.batch_size
        index = None if options is None else options.get("index")
        if index is not None:
            if isinstance(index, bool | np.bool_) or not _is_integer(index) or not 0 <= int(index) < n:
                raise ValueError(f"reset(options={{'index': {index!r}}}): expected an integer in [0, {n}), "
                                 f"the rows of the {self._split!r} split")
        super().reset(seed=seed)
        self._index = int(index) if index is not None else int(self.np_random.integers(n))
        self._prefix = []
        self._last_total = 0.0
        self._done = False
        return self._obs(), {"action_mask": self._mask.copy(), "index": self._index}

    def step(self, action: int | np.integer[Any]):
        vocab = self.task.vocab
        if self._done is None:
            raise ResetNeeded("step() before reset(): call env.reset() to start an episode")
        if self._done:
            raise ResetNeeded("step() after the episode ended (terminated or truncated): call env.reset() first")
        if isinstance(action, bool | np.bool_) or not _is_integer(action):
            shown = action if not isinstance(action, np.ndarray) else f"array of shape {action.shape}"
            raise ValueError(f"action {shown!r} ({type(action).__name__}) is not a token id: "
                             f"expected an integer in [{vocab.eos}, {len(vocab)})")
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} is not a token id in [{vocab.eos}, {len(vocab)})")
        self._prefix.append(action)
        terminated = action == vocab.eos
        truncated = (not terminated) and len(self._prefix) >= self.max_len - 1
        done = terminated or truncated
        if self.dense or done:
            total = self._score(self._prefix)
            reward = total - self._last_total if self.dense else total
            self._last_total = total
        else:
            reward = 0.0
        info: dict[str, Any] = {"action_mask": self._mask.copy()}
        self._done = done
        if done:
            closed = self._prefix if terminated else self._prefix + [vocab.eos]
            info["sequence"] = list(closed)
            info["text"] = vocab.to_string(closed)
            info["return"] = self._last_total
        return self._obs(), float(reward), terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.task.vocab.to_string(self._prefix) + "\n"
        return None


def _is_integer(value: Any) -> bool:
    """An int, a numpy integer scalar, or a 0-d integer array or tensor (not a bool, float or string)."""
    if isinstance(value, int | np.integer):
        return True
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return bool(np.issubdtype(value.dtype, np.integer))
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        return not value.dtype.is_floating_point and not value.dtype.is_complex and value.dtype != torch.bool
    return False


def make_env(task: str, **kwargs: Any) -> SequenceEnv:
    """Entry point used by ``gymnasium.make("seqrl/…")``."""
    return SequenceEnv(task, **kwargs)
