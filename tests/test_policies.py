"""Every policy: sampler log-probs = scorer log-probs; normalization; beam search finds the mode."""

import pytest
import torch

from seqrl import exact
from seqrl.policies import make_policy
from seqrl.types import BatchError, SequenceBatch, Vocab

SRC = Vocab(["x", "y", "z"])


def build(name: str, vocab: Vocab, max_len: int):
    if name == "seq2seq":
        return make_policy(name, vocab, max_len, source_vocab=SRC, hidden_size=16, embedding_dim=8).eval()
    small = {"lstm": dict(hidden_size=16), "gru": dict(hidden_size=16, embedding_dim=5),
             "transformer": dict(d_model=16, num_heads=2, dim_feedforward=32)}[name]
    return make_policy(name, vocab, max_len, **small).eval()


def context_for(name: str, n: int):
    if name != "seq2seq":
        return None
    return SequenceBatch.from_strings(["x y", "z z y x", "y"][:n], SRC)


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer", "seq2seq"])
def test_sample_log_probs_equal_scorer(name, binary_vocab):
    policy = build(name, binary_vocab, max_len=7)
    ctx = context_for(name, 3)
    samples = policy.sample(16 if ctx is None else 5, ctx, generator=torch.Generator().manual_seed(1))
    samples.batch.validate(binary_vocab, max_len=7)
    scored = policy.sequence_log_prob(samples.batch)
    torch.testing.assert_close(samples.logp, scored, atol=1e-5, rtol=1e-5)
    per_token = policy.token_log_probs(samples.batch)
    torch.testing.assert_close(samples.logp_t[:, : per_token.shape[1]], per_token, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer", "seq2seq"])
def test_policy_is_normalized_over_enumerated_space(name, binary_vocab):
    policy = build(name, binary_vocab, max_len=5)
    space = exact.enumerate_sequences(binary_vocab, 5)
    ctx = context_for(name, 1)
    probs = exact.policy_distribution(policy, space, ctx)
    assert abs(float(probs.sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("name", ["lstm", "transformer", "seq2seq"])
def test_beam_search_finds_exact_mode(name, binary_vocab):
    torch.manual_seed(3)
    max_len = 5
    policy = build(name, binary_vocab, max_len)
    # Sharpen the output layer so the mode is well separated and not trivially "EOS".
    with torch.no_grad():
        policy.output.weight.mul_(8.0)
    space = exact.enumerate_sequences(binary_vocab, max_len)
    ctx = context_for(name, 1)
    probs = exact.policy_distribution(policy, space, ctx)
    mode = space.to_lists()[int(probs.argmax())]
    best, score = policy.beam_search(ctx, beam_size=2 ** (max_len - 1))
    assert best.to_lists()[0] == mode
    assert abs(float(score[0]) - float(probs.max().log())) < 1e-4
    greedy = policy.greedy(1, ctx).batch
    beam1, _ = policy.beam_search(ctx, beam_size=1)
    assert greedy.to_lists() == beam1.to_lists()


def test_override_hook_replaces_tokens_and_eos_is_forced(binary_vocab):
    policy = build("lstm", binary_vocab, max_len=6)
    one = binary_vocab.stoi["1"]
    samples = policy.sample(8, override=lambda info: torch.full_like(info.proposed, one))
    assert samples.batch.to_lists() == [[one] * 5 + [binary_vocab.eos]] * 8
    torch.testing.assert_close(samples.logp, policy.sequence_log_prob(samples.batch))


def test_temperature_changes_sampling_distribution(binary_vocab):
    policy = build("lstm", binary_vocab, max_len=4)
    cold = policy.sample(4, temperature=0.5)
    expected = policy.log_dists(cold.batch) / 0.5
    expected = torch.log_softmax(expected, -1).gather(2, cold.tokens[..., None]).squeeze(2)
    expected = torch.where(cold.batch.mask_t, expected, torch.zeros_like(expected))
    torch.testing.assert_close(cold.logp_t, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        policy.sample(2, temperature=0.0)


def test_context_rules(binary_vocab):
    with pytest.raises(BatchError, match="conditional"):
        build("seq2seq", binary_vocab, 4).sample(2)
    with pytest.raises(BatchError, match="unconditional"):
        build("lstm", binary_vocab, 4).sample(2, SequenceBatch.from_strings(["x"], SRC))


def test_unknown_policy_lists_known(binary_vocab):
    with pytest.raises(KeyError, match="known: gru, hf, lstm, seq2seq, transformer"):
        make_policy("mamba", binary_vocab, 4)
