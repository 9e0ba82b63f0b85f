"""Prompts for algorithms that draw their own samples (DPG, GDC++, f-DPG, CDPG, KL-control): which prompts a step
samples from, and how many completions each gets.

A prompt set is a :class:`~seqrl.types.SequenceBatch` of prompt token ids (the policy's vocabulary, no EOS
added); a step draws ``per_prompt`` completions of each of its prompts, prompt-major (row ``i·per_prompt + j`` is
the ``j``-th completion of the step's ``i``-th prompt). With ``per_step = None`` every step uses every prompt
(each trained on at every step) as long as each then gets at least :data:`MIN_COMPLETIONS` completions, else
as many as do; the prompts are visited in order, ``per_step`` at a time, so that every prompt is trained on once
per pass.

With several processes (:mod:`seqrl.distributed`) each rank samples the completions of its contiguous chunk of
the step's prompts (:meth:`PromptSchedule.local_step`), so that every prompt's group of completions, the group
a leave-one-out baseline and CDPG's Ẑ_x average over, lies on one rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .config import check_size
from .distributed import share, world
from .types import BatchError, SequenceBatch, Vocab

MIN_COMPLETIONS = 4
"""Completions each prompt of a step gets at least under the default ``per_step``: a per-prompt baseline (RLOO)
or normalizer (CDPG's Ẑ_x) needs several; TRL's GRPO draws 8, its RLOO 2."""
MAX_PROMPTS = 10_000_000
"""Prompts a file may hold (a prompt set lives in memory as one padded batch)."""
MAX_PROMPT_TOKENS = 100_000


@dataclass(frozen=True)
class PromptStep:
    """The prompts of one step and where they sit in the whole set."""

    prompts: SequenceBatch
    index: Tensor
    """[P] the step's prompts' rows in the prompt set."""
    per_prompt: int


class PromptSchedule:
    """Which prompts step ``t`` samples from (see the module docstring)."""

    def __init__(self, prompts: SequenceBatch, per_step: int | None = None, samples: int | None = None) -> None:
        """``samples``: the completions a step draws, which the default ``per_step`` reads."""
        if prompts.batch_size == 0:
            raise BatchError("empty prompt set: give at least one prompt")
        if per_step is not None and per_step < 1:
            raise ValueError(f"prompts per step must be ≥ 1 or None, got {per_step}")
        self.prompts = prompts
        self.size = prompts.batch_size
        if per_step is None:
            per_step = self.size if samples is None else max(1, min(self.size, samples // MIN_COMPLETIONS))
        self.per_step = min(per_step, self.size)

    def step(self, step: int, samples: int) -> PromptStep:
        """The prompts of step ``step`` (0-based) and the completions each gets: ``ceil(samples / P)``."""
        start = (step * self.per_step) % self.size
        index = (torch.arange(self.per_step) + start) % self.size
        per_prompt = max(1, math.ceil(samples / self.per_step))
        return PromptStep(self.prompts.index(index.to(self.prompts.device)), index, per_prompt)

    def local_step(self, step: int, samples: int) -> PromptStep:
        """This process's part of :meth:`step`: its chunk of the step's prompts (all of them with one process)."""
        full = self.step(step, samples)
        w = world()
        if w.size == 1:
            return full
        part = share(len(full.index), "prompts per step")
        index = full.index[w.rank * part : (w.rank + 1) * part]
        return PromptStep(self.prompts.index(index.to(self.prompts.device)), index, full.per_prompt)


def prompt_rows(prompts: SequenceBatch, vocab: Vocab) -> SequenceBatch:
    """Prompts as data for an algorithm that samples per row (REINFORCE): each row's context a prompt, its
    target an empty reference (EOS alone), which a reward that needs no reference never reads."""
    eos = torch.full((prompts.batch_size, 1), vocab.eos, dtype=torch.long, device=prompts.device)
    return SequenceBatch(eos, torch.ones(prompts.batch_size, dtype=torch.long, device=prompts.device),
                         context=prompts)


def read_prompt_texts(path: str | Path, what: str = "prompts") -> list[str]:
    """The prompts of a file: one per line (blank lines skipped), or JSON lines with a ``"prompt"`` field (a
    ``.jsonl`` file, or one whose first non-blank line starts with ``{``), TRL's dataset convention."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file {str(path)!r}")
    lines = path.read_text(encoding="utf-8").splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise BatchError(f"{what}: {path} holds no prompt")
    check_size(f"{what}: prompts in {path}", len(numbered), MAX_PROMPTS)
    if path.suffix != ".jsonl" and not numbered[0][1].lstrip().startswith("{"):
        return [line for _, line in numbered]
    texts = []
    for number, line in numbered:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{what}: {path}:{number}: not JSON ({err.msg})") from None
        except RecursionError:
            raise ValueError(f"{what}: {path}:{number}: JSON nested too deeply") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise ValueError(f'{what}: {path}:{number}: expected an object with a "prompt" string')
        texts.append(record["prompt"])
    return texts


def encode_prompts(texts: Sequence[str], vocab: Vocab, what: str = "prompts") -> SequenceBatch:
    """Prompt texts as a context batch of ``vocab``'s ids: a tokenizer's vocabulary gives each text's ids exactly
    as the tokenizer does (its ``encode_prompts``); seqrl's own takes space-separated symbols. No EOS is added,
    and a prompt without tokens is refused (nothing to condition on)."""
    encode = getattr(vocab, "encode_prompts", None)
    if encode is not None:
        batch = encode(list(texts))
    else:
        rows = []
        for i, text in enumerate(texts):
            try:
                rows.append(vocab.encode(text, add_eos=False))
            except ValueError as err:
                raise ValueError(f"{what}: prompt {i + 1} ({text[:40]!r}): {err}") from None
        empty = [i + 1 for i, row in enumerate(rows) if not row]
        if empty:
            raise BatchError(f"{what}: prompt {empty[0]} has no tokens: give every prompt some text")
        check_size(f"{what}: tokens in the longest prompt", max(len(r) for r in rows), MAX_PROMPT_TOKENS)
        batch = SequenceBatch.from_lists(rows, pad=vocab.pad)
    if bool((batch.lengths == 0).any()):
        first = int((batch.lengths == 0).nonzero()[0]) + 1
        raise BatchError(f"{what}: prompt {first} has no tokens: give every prompt some text")
    return batch


def read_prompts(path: str | Path, vocab: Vocab) -> SequenceBatch:
    """:func:`read_prompt_texts` then :func:`encode_prompts`."""
    return encode_prompts(read_prompt_texts(path), vocab, f"prompts in {path}")


__all__ = ["MAX_PROMPTS", "MIN_COMPLETIONS", "PromptSchedule", "PromptStep", "encode_prompts", "prompt_rows",
           "read_prompt_texts", "read_prompts"]
