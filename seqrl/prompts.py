"""Prompts for algorithms that draw their own samples (DPG, GDC++, f-DPG, CDPG, KL-control): which prompts a step
samples from, and how many completions each gets.

A prompt set is a :class:`~seqrl.types.SequenceBatch` of prompt token ids (the policy's vocabulary, no EOS
added); a step draws ``per_prompt`` completions of each of its prompts, prompt-major (row ``i·per_prompt + j`` is
the ``j``-th completion of the step's ``i``-th prompt). With ``per_step = None`` every step uses every prompt
(each trained on at every step); otherwise the prompts are visited in order, ``per_step`` at a time, so that
every prompt is trained on once per pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .types import BatchError, SequenceBatch


@dataclass(frozen=True)
class PromptStep:
    """The prompts of one step and where they sit in the whole set."""

    prompts: SequenceBatch
    index: Tensor
    """[P] the step's prompts' rows in the prompt set."""
    per_prompt: int


class PromptSchedule:
    """Which prompts step ``t`` samples from (see the module docstring)."""

    def __init__(self, prompts: SequenceBatch, per_step: int | None = None) -> None:
        if prompts.batch_size == 0:
            raise BatchError("empty prompt set: give at least one prompt")
        if per_step is not None and per_step < 1:
            raise ValueError(f"prompts per step must be ≥ 1 or None, got {per_step}")
        self.prompts = prompts
        self.size = prompts.batch_size
        self.per_step = min(per_step or self.size, self.size)

    def step(self, step: int, samples: int) -> PromptStep:
        """The prompts of step ``step`` (0-based) and the completions each gets: ``ceil(samples / P)``."""
        start = (step * self.per_step) % self.size
        index = (torch.arange(self.per_step) + start) % self.size
        per_prompt = max(1, math.ceil(samples / self.per_step))
        return PromptStep(self.prompts.index(index.to(self.prompts.device)), index, per_prompt)


__all__ = ["PromptSchedule", "PromptStep"]
