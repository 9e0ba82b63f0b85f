"""The GAM binary-motif process ([DPG] Sec. 4): white-noise binary strings of length n that
contain a motif m, sampled exactly and uniformly.

N(pos, s) counts the completions of a string in KMP-automaton state s after ``pos`` bits
that contain m by the end; drawing each bit with probability N(pos+1, δ(s, b)) / N(pos, s)
yields every string containing m with probability 1 / N(0, 0): exact, no rejection.
H(p_true) = log N(n, m) nats per sequence.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..types import SequenceBatch, Vocab
from .tasks import Task, check_task_size, register_task, split_generator


class MotifError(ValueError):
    """A motif or length the motif process cannot use."""


def check_motif(motif: str, length: int | None = None) -> None:
    if not isinstance(motif, str) or not motif or set(motif) - {"0", "1"}:
        raise MotifError(f"motif must be a non-empty binary string of 0s and 1s, got {motif!r}")
    if length is not None and length < len(motif):
        raise MotifError(f"length {length} is shorter than the motif {motif!r} ({len(motif)} bits)")


def kmp_automaton(motif: str) -> np.ndarray:
    """[m+1, 2] transitions δ(s, b) of the automaton that tracks the longest suffix of the
    input that is a prefix of ``motif``; state m (motif seen) is absorbing."""
    m = len(motif)
    delta = np.zeros((m + 1, 2), dtype=np.int64)
    for s in range(m + 1):
        for b in (0, 1):
            if s == m:
                delta[s, b] = m
                continue
            text = motif[:s] + str(b)
            k = min(len(text), m)
            while k > 0 and text[-k:] != motif[:k]:
                k -= 1
            delta[s, b] = k
    return delta


def completion_counts(motif: str, length: int) -> list[list[int]]:
    """N[pos][s]: exact (Python int) number of ways to finish from state s after pos bits."""
    delta = kmp_automaton(motif)
    m = len(motif)
    counts = [[0] * (m + 1) for _ in range(length + 1)]
    counts[length][m] = 1
    for pos in range(length - 1, -1, -1):
        for s in range(m + 1):
            counts[pos][s] = counts[pos + 1][delta[s, 0]] + counts[pos + 1][delta[s, 1]]
    return counts


def count_with_motif(motif: str, length: int) -> int:
    """N(n, m): binary strings of length n that contain m."""
    check_motif(motif, length)
    return completion_counts(motif, length)[0][0]


def motif_vocab() -> Vocab:
    return Vocab(["0", "1"])


class MotifTask(Task):
    """GAM motif task: exact samples of p_true, deterministic D/V/T splits per seed.

    Args:
        motif: binary motif m.
        length: string length n (30 in [DPG]).
        train_size: |D|; valid_size: |V| (default |D|/4, at least 100); test_size: |T|.
        seed: splits are drawn from streams seeded by (seed, split), so |T| does not
            change when |D| does.
        max_len: longest sequence a policy may produce, EOS included (default n + 1).
    """

    name = "motif"
    default_reward = "motif"

    def __init__(
        self,
        motif: str = "1000101000101",
        length: int = 30,
        *,
        train_size: int = 5000,
        valid_size: int | None = None,
        test_size: int = 5000,
        seed: int = 1234,
        max_len: int | None = None,
    ) -> None:
        check_task_size("MotifTask", max_length=max(length, max_len or 0),
                        sizes={"train_size": train_size, "test_size": test_size, "valid_size": valid_size or 0})
        check_motif(motif, length)
        for label, size in (("train_size", train_size), ("test_size", test_size)):
            if size < 1:
                raise MotifError(f"{label} must be ≥ 1, got {size}")
        self.motif, self.length, self.seed = motif, length, seed
        self.vocab = motif_vocab()
        self.source_vocab = None
        self.max_len = max_len if max_len is not None else length + 1
        if self.max_len < length + 1:
            raise MotifError(f"max_len={self.max_len} cannot hold {length} bits plus EOS")
        self.sizes = {
            "train": train_size,
            "valid": valid_size if valid_size is not None else max(train_size // 4, 100),
            "test": test_size,
        }
        counts = completion_counts(motif, length)
        self.count = counts[0][0]
        self._delta = torch.from_numpy(kmp_automaton(motif))
        # float64 holds every count < 2^53 exactly; n ≤ 52 is plenty for this task.
        self._counts = torch.tensor(counts, dtype=torch.float64)
        self._splits: dict[str, SequenceBatch] = {}

    def entropy(self) -> float:
        """H(p_true) = log N(n, m) in nats per sequence (uniform over N strings)."""
        return math.log(self.count)

    def sample(self, num: int, generator: torch.Generator | None = None) -> SequenceBatch:
        """``num`` exact, uniform samples of p_true (bits then EOS), on the CPU."""
        if num < 1:
            raise MotifError(f"num must be ≥ 1, got {num}")
        state = torch.zeros(num, dtype=torch.long)
        bits = torch.empty(num, self.length, dtype=torch.long)
        u = torch.rand(num, self.length, generator=generator, dtype=torch.float64)
        for pos in range(self.length):
            total = self._counts[pos, state]
            p_one = self._counts[pos + 1, self._delta[state, 1]] / total
            bit = (u[:, pos] < p_one).long()
            bits[:, pos] = bit
            state = self._delta[state, bit]
        ones, zeros = self.vocab.stoi["1"], self.vocab.stoi["0"]
        tokens = torch.where(bits == 1, ones, zeros)
        tokens = torch.cat([tokens, torch.full((num, 1), self.vocab.eos)], 1)
        return SequenceBatch(tokens, torch.full((num,), self.length + 1, dtype=torch.long))

    def split(self, name: str) -> SequenceBatch:
        if name not in self.sizes:
            raise KeyError(f"unknown split {name!r}; expected one of {sorted(self.sizes)}")
        if name not in self._splits:
            self._splits[name] = self.sample(self.sizes[name], split_generator(self.seed, name))
        return self._splits[name]

    def potential(self):
        """The unnormalized p_true as a potential: P(x) = 2^-n·[m ∈ x, |x| = n]."""
        from ..ebm.base import MotifProcessPotential

        return MotifProcessPotential(self.vocab, self.motif, self.length)

    def reward_kwargs(self) -> dict:
        return {"motif": self.motif}


register_task("motif", MotifTask)
