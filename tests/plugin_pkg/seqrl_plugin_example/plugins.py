"""The plug-ins this package's setup.cfg names in the groups seqrl.rewards, seqrl.potentials, seqrl.envs."""

from __future__ import annotations

import torch
from torch import Tensor

from seqrl.envs.tasks import SPLITS, Task, split_generator
from seqrl.types import SequenceBatch, Vocab

VOCAB = Vocab(["a", "b", "c"])


def count_a(hyps: SequenceBatch, refs: SequenceBatch | None = None) -> Tensor:
    """R(y) = the number of 'a' in y (no reference needed)."""
    return (hyps.tokens == VOCAB.stoi["a"]).sum(1).float()


def prefer_a(batch: SequenceBatch) -> Tensor:
    """log P(x) = (number of 'a' in x) − |x|: an EBM over every sequence, favouring 'a'."""
    return (batch.tokens == VOCAB.stoi["a"]).sum(1).float() - batch.lengths.float()


class TinyABCTask(Task):
    """Unconditional sequences over {a, b, c} of at most ``max_len - 1`` symbols, uniform length and symbols."""

    name = "tiny_abc"
    default_reward = "count_a"

    def __init__(self, max_len: int = 3, size: int = 32, seed: int = 0) -> None:
        self.vocab, self.source_vocab, self.max_len = VOCAB, None, max_len
        self.size, self.seed = size, seed

    def split(self, name: str) -> SequenceBatch:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}")
        g = split_generator(self.seed, name)
        lengths = torch.randint(0, self.max_len, (self.size,), generator=g)
        symbols = torch.randint(3, 6, (self.size, self.max_len - 1), generator=g)
        rows = [symbols[i, : int(k)].tolist() + [VOCAB.eos] for i, k in enumerate(lengths)]
        return SequenceBatch.from_lists(rows, pad=VOCAB.pad)
