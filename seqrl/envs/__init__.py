"""Environments and tasks. Importing this module registers the gymnasium ids
``seqrl/Motif-v0``, ``seqrl/ToyTranslation-v0``, ``seqrl/Copy-v0`` and ``seqrl/Reverse-v0``, and
``seqrl/Sequence-v0``, whose ``task=`` names any task (a plug-in's too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from .grammar import Grammar, GrammarConfig
from .motif import MotifError, MotifTask, check_motif, completion_counts, count_with_motif, kmp_automaton
from .rollout import Rollout, rollout
from .sequence_env import SequenceEnv, make_env
from .tasks import (
    TASKS,
    CopyTask,
    PairTask,
    ReverseTask,
    Task,
    TextPairTask,
    ToyTranslationTask,
    make_task,
    read_text_pairs,
)
from .variant import VariantTranslationTask

ENV_IDS: dict[str, str] = {
    "seqrl/Motif-v0": "motif",
    "seqrl/ToyTranslation-v0": "toy_translation",
    "seqrl/Copy-v0": "copy",
    "seqrl/Reverse-v0": "reverse",
}


def _register() -> None:
    for env_id, task in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="seqrl.envs.sequence_env:make_env", kwargs={"task": task})
    if "seqrl/Sequence-v0" not in gym.registry:  # gym.make("seqrl/Sequence-v0", task="name") for any task
        gym.register(id="seqrl/Sequence-v0", entry_point="seqrl.envs.sequence_env:make_env")


_register()


def register_env(name: str, task: Callable[..., Task] | None = None, *, env_id: str | None = None) -> Any:
    """Register a task (a :class:`Task` class or factory taking its settings) as the environment ``name``:
    ``seqrl train --env name``, ``make_task(name)`` and ``gym.make(env_id)`` (default ``seqrl/<name>``)
    build it. Without ``task``, a decorator: ``@register_env("mine") class Mine(Task): ...``."""

    def add(target: Callable[..., Task]) -> Callable[..., Task]:
        TASKS.register(name, target)  # type: ignore[arg-type]  # a factory builds a Task as a class does
        gym_id = env_id or f"seqrl/{name}"
        ENV_IDS[gym_id] = name
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point="seqrl.envs.sequence_env:make_env", kwargs={"task": name})
        return target

    return add(task) if task is not None else add


def task_for_env(env_id: str, **kwargs) -> Task:
    """The task behind a registered environment id (or a bare task name)."""
    if env_id in ENV_IDS:
        return make_task(ENV_IDS[env_id], **kwargs)
    if env_id in TASKS:
        return make_task(env_id, **kwargs)
    known = ", ".join(list(ENV_IDS) + TASKS.names())
    raise KeyError(f"unknown environment {env_id!r}; known environments: {known}")


__all__ = [
    "Grammar", "GrammarConfig",
    "ENV_IDS", "TASKS", "CopyTask", "MotifError", "MotifTask", "PairTask", "ReverseTask", "Rollout",
    "SequenceEnv", "Task", "TextPairTask", "ToyTranslationTask", "VariantTranslationTask", "check_motif",
    "completion_counts", "count_with_motif", "kmp_automaton", "make_env", "make_task", "read_text_pairs",
    "register_env", "rollout", "task_for_env",
]
