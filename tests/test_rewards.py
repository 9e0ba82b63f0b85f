"""Rewards: hand-computed values, ΔR telescopes to R, registry and entry points, bad values."""

import math

import pytest
import torch

from seqrl.ebm.base import MotifProcessPotential
from seqrl.rewards import (
    REWARDS,
    BaseReward,
    RewardError,
    compute_reward,
    make_reward,
    prefixes_with_eos,
    register_reward,
    token_rewards,
)
from seqrl.types import SequenceBatch, Vocab

V = Vocab("a b c d".split())
HYPS = SequenceBatch.from_strings(["a b c", "a c", "d d d d", "", "b a"], V)
REFS = SequenceBatch.from_strings(["a b c", "a b c d", "d d", "a", "a b"], V)


def test_hand_computed_values():
    # delta: only row 0 equals its reference.
    assert compute_reward(make_reward("delta", V), HYPS, REFS).tolist() == [1, 0, 0, 0, 0]
    # hamming over max length, EOS counted: "a c eos" vs "a b c d eos" → c≠b, eos≠c, pad≠d, pad≠eos = 4.
    assert compute_reward(make_reward("hamming", V), HYPS, REFS).tolist() == [0, -4, -3, -2, -2]
    # edit distance on symbols: "a c"→"a b c d" = 2 inserts; "d d d d"→"d d" = 2; ""→"a" = 1; "b a"→"a b" = 2.
    assert compute_reward(make_reward("edit", V), HYPS, REFS).tolist() == [0, -2, -2, -1, -2]
    bleu = compute_reward(make_reward("bleu", V), HYPS, REFS)
    assert bleu[0] == pytest.approx(1.0) and bleu[3] == 0.0 and 0 < bleu[1] < 1
    rouge = compute_reward(make_reward("rouge", V, variant="rouge1"), HYPS, REFS)
    # "a c" vs "a b c d": P = 2/2, R = 2/4 → F1 = 2/3.
    assert rouge[1] == pytest.approx(2 / 3, abs=1e-6)
    assert compute_reward(make_reward("rouge", V), HYPS, REFS)[0] == pytest.approx(3.0)


@pytest.mark.parametrize("name", ["delta", "hamming", "edit", "bleu", "rouge", "motif", "weighted", "potential"])
def test_token_rewards_sum_to_sequence_reward(name):
    vocab = Vocab(["0", "1"]) if name in ("motif", "potential") else V
    if name == "motif":
        reward = make_reward("motif", vocab, motif="101")
        hyps = SequenceBatch.from_strings(["1 0 1", "0 1 0 1 1", "1 1 0", ""], vocab)
        refs = None
    elif name == "potential":
        reward = make_reward("potential", vocab, potential=MotifProcessPotential(vocab, "11", 3), floor=-10.0)
        hyps = SequenceBatch.from_strings(["1 1 0", "0 1 1", "0 1 0", "1 1"], vocab)
        refs = None
    elif name == "weighted":
        reward = make_reward("weighted", vocab, terms={"bleu": 1.0, "hamming": 0.5})
        hyps, refs = HYPS, REFS
    else:
        reward = make_reward(name, vocab)
        hyps, refs = HYPS, REFS
    delta_t = token_rewards(reward, hyps, refs)
    assert delta_t.shape == hyps.tokens.shape
    assert bool((delta_t[~hyps.mask_t] == 0).all())
    torch.testing.assert_close(delta_t.sum(1), compute_reward(reward, hyps, refs), atol=1e-5, rtol=1e-5)


def test_token_rewards_follow_partial_sequence_convention():
    # ΔR_t = R(y_≤t + eos) − R(y_<t + eos) with R(∅) = 0 ([VAML/ERAC] Eq. 4, 13).
    reward = make_reward("hamming", V)
    hyps = SequenceBatch.from_strings(["a c"], V)
    refs = SequenceBatch.from_strings(["a b"], V)
    # R("a"+eos) = −2 (eos≠b, pad≠eos); R("a c"+eos) = −1; R(full) = −1.
    assert token_rewards(reward, hyps, refs).tolist() == [[-2.0, 1.0, 0.0]]


def test_prefixes_with_eos():
    batch = SequenceBatch.from_strings(["a b"], V)
    pre = prefixes_with_eos(batch, V.eos)
    assert pre.to_lists() == [[3, 2], [3, 4, 2], [3, 4, 2]]


def test_terminal_only_reward_pays_at_the_end():
    class Length(BaseReward):
        name = "length"
        needs_reference = False
        terminal_only = True

        def score(self, hyps, refs):
            return hyps.lengths.float()

    r = Length(V)
    delta_t = token_rewards(r, HYPS)
    assert delta_t.sum(1).tolist() == HYPS.lengths.float().tolist()
    assert delta_t[0].tolist()[:4] == [0, 0, 0, 4]


def test_register_user_reward_and_unknown_names():
    @register_reward("test_constant")
    class Constant(BaseReward):
        name = "test_constant"
        needs_reference = False

        def score(self, hyps, refs):
            return torch.full((hyps.batch_size,), 0.5)

    assert "test_constant" in REWARDS.names()
    assert compute_reward(make_reward("test_constant", V), HYPS).tolist() == [0.5] * 5
    with pytest.raises(KeyError, match="unknown reward 'meteor'; known: bleu, bleu_scaled, delta"):
        make_reward("meteor", V)


def test_entry_point_group_is_read(monkeypatch):
    import seqrl.registry as registry

    class FakeEP:
        name = "from_plugin"

        def load(self):
            return lambda vocab: (lambda hyps, refs=None: torch.zeros(hyps.batch_size))

    reg = registry.Registry("reward", group="seqrl.rewards")
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEP()] if group == "seqrl.rewards" else [])
    assert "from_plugin" in reg.names()


def test_nan_inf_and_shape_errors():
    class Bad(BaseReward):
        name = "bad"
        needs_reference = False

        def __init__(self, vocab, value):
            super().__init__(vocab)
            self.value = value

        def score(self, hyps, refs):
            out = torch.zeros(hyps.batch_size)
            out[1] = self.value
            return out

    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(RewardError, match="non-finite"):
            compute_reward(Bad(V, value), HYPS)

    class WrongShape(Bad):
        def score(self, hyps, refs):
            return torch.zeros(hyps.batch_size, 2)

    with pytest.raises(RewardError, match=r"expected \[B\]"):
        compute_reward(WrongShape(V, 0.0), HYPS)
    with pytest.raises(RewardError, match="pass refs"):
        compute_reward(make_reward("bleu", V), HYPS)
    with pytest.raises(ValueError, match="5 hypotheses but 1 references"):
        compute_reward(make_reward("bleu", V), HYPS, REFS.index([0]))
    with pytest.raises(RewardError, match="unknown ROUGE variant"):
        make_reward("rouge", V, variant="rouge9")


@pytest.mark.parametrize("name", ["bleu", "rouge", "hamming", "edit", "delta"])
def test_candidate_rewards_symmetric_shortcut_matches_full_scoring(name):
    from seqrl.rewards import candidate_rewards

    vocab = Vocab([f"w{i}" for i in range(9)])
    refs = SequenceBatch.from_strings(["w1 w2 w3 w2", "w4 w4", "w0 w1 w2 w3 w4 w5 w6 w7 w8"], vocab)
    prefix = SequenceBatch.from_strings(["w1 w5", "w7 w4", "w0 w2"], vocab).tokens[:, :2]
    fast = make_reward(name, vocab)
    assert fast.reference_symmetric

    class Plain:  # the same reward without the flag: every candidate scored
        def __init__(self, inner):
            self.inner, self.name, self.needs_reference, self.terminal_only = inner, name, True, False

        def __call__(self, hyps, refs=None):
            return self.inner(hyps, refs)

    torch.testing.assert_close(candidate_rewards(fast, prefix, refs, vocab),
                               candidate_rewards(Plain(fast), prefix, refs, vocab), atol=1e-6, rtol=0)
