"""The exposure-bias probe on policies whose dependence on the prefix is known exactly."""

import pytest
import torch

from seqrl.metrics import exposure_bias
from seqrl.policies.base import AutoregressivePolicy
from seqrl.types import BatchError, SequenceBatch, Vocab

SYMBOLS = ["a", "b", "c"]


class TablePolicy(AutoregressivePolicy):
    """Logits from a table indexed by the previous token (``bigram``) or by the position only."""

    def __init__(self, vocab: Vocab, max_len: int, table: torch.Tensor, *, bigram: bool) -> None:
        super().__init__(vocab, max_len)
        self.table = torch.nn.Parameter(table)
        self.bigram = bigram

    def init_state(self, context, batch_size):
        return torch.zeros((), dtype=torch.long)

    def step(self, state, prev_tokens):
        logits = self.table[prev_tokens] if self.bigram else self.table[state].expand(len(prev_tokens), -1)
        return logits, state + 1

    def reorder_state(self, state, index):
        return state


def cyclic_bigram(vocab: Vocab) -> torch.Tensor:
    """BOS → a, a → b, b → c, c → a: the reference "a b c a" is predicted perfectly."""
    table = torch.zeros(len(vocab), len(vocab))
    following = {vocab.bos: "a", **{vocab.encode(s, add_eos=False)[0]: nxt for s, nxt in zip(SYMBOLS, "bca")}}
    for prev, nxt in following.items():
        table[prev, vocab.encode(nxt, add_eos=False)[0]] = 5.0
    return table


def references(vocab: Vocab, rows: int) -> SequenceBatch:
    return SequenceBatch.from_lists([vocab.encode("a b c a".split())] * rows, pad=vocab.pad)


def test_prefix_independent_policy_shows_no_exposure_bias():
    vocab = Vocab(SYMBOLS)
    table = torch.randn(8, len(vocab))
    policy = TablePolicy(vocab, 5, table, bigram=False)
    out = exposure_bias(policy, references(vocab, 50), generator=torch.Generator().manual_seed(0))
    assert out["accuracy_drop"] == 0.0
    assert out["clean_nll"] == pytest.approx(out["corrupted_nll"], abs=1e-6)


def test_bigram_policy_loses_exactly_the_token_after_the_error():
    # "a b c a" + EOS, max_len 5 (EOS forced at the last position). The corrupted position s is
    # uniform on {0, 1, 2, 3}; tokens after it: 4 − s; the bigram mispredicts exactly the one at
    # s + 1 when it is not the forced EOS (s ≤ 2). Corrupted accuracy → (2.5 − 0.75) / 2.5 = 0.7.
    vocab = Vocab(SYMBOLS)
    policy = TablePolicy(vocab, 5, cyclic_bigram(vocab), bigram=True)
    out = exposure_bias(policy, references(vocab, 20_000), generator=torch.Generator().manual_seed(0))
    assert out["clean_accuracy"] == 1.0
    assert out["corrupted_accuracy"] == pytest.approx(0.7, abs=0.01)
    assert out["accuracy_drop"] == pytest.approx(0.3, abs=0.01)
    assert out["corrupted_nll"] > out["clean_nll"]


def test_exposure_bias_rejects_data_without_a_prefix():
    vocab = Vocab(SYMBOLS)
    policy = TablePolicy(vocab, 5, cyclic_bigram(vocab), bigram=True)
    eos_only = SequenceBatch.from_lists([[vocab.eos]] * 3, pad=vocab.pad)
    with pytest.raises(BatchError, match="single token"):
        exposure_bias(policy, eos_only)
    with pytest.raises(BatchError, match="empty"):
        exposure_bias(policy, eos_only.index(torch.arange(0)))
