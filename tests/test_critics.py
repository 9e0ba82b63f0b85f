"""Critics ([VAML/ERAC] Sec. 4): shapes and masking aligned with the policy, smoothing term, target network."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.critics import (
    NetworkCritic,
    TabularCritic,
    TargetCritic,
    entropy_t,
    expected_q,
    gather_q,
    variance_penalty,
)
from seqrl.policies import make_policy
from seqrl.rewards.base import make_reward
from seqrl.types import SequenceBatch, Vocab


def test_shapes_and_masking_agree_with_the_policy(binary_vocab):
    space = exact.enumerate_sequences(binary_vocab, 3)  # widths 3 = max_len: the last row forces EOS
    lstm = make_policy("lstm", binary_vocab, 3, hidden_size=8)
    s2s = make_policy("seq2seq", binary_vocab, 3, source_vocab=binary_vocab, hidden_size=8, embedding_dim=4)
    src = space.with_context(space)  # any source per row
    cases = [
        (lstm.log_dists(space), TabularCritic(binary_vocab, 3)(space)),
        (lstm.log_dists(space), NetworkCritic.for_policy(lstm)(space, space)),
        (s2s.log_dists(src), NetworkCritic.for_policy(s2s)(src, space)),
        (s2s.log_dists(src), NetworkCritic.for_policy(s2s)(src, None)),  # no reference: reads a lone EOS
    ]
    for log_pi_t, q_t in cases:
        assert q_t.shape == log_pi_t.shape == (7, 3, len(binary_vocab))
        assert torch.equal(torch.isinf(q_t), torch.isinf(log_pi_t))  # PAD/BOS always; all but EOS at t = 2
        assert not torch.isnan(q_t).any()
    q_t = cases[0][1]
    assert torch.isinf(q_t[:, :, [binary_vocab.pad, binary_vocab.bos]]).all()
    assert torch.isfinite(q_t[:, 2, binary_vocab.eos]).all() and torch.isinf(q_t[:, 2, binary_vocab.symbol_ids]).all()


def test_tabular_critic_indexes_prefixes_like_the_exact_table(binary_vocab):
    table = exact.soft_q_values(make_reward("motif", binary_vocab, motif="1"), binary_vocab, 3, 1.0)
    critic = TabularCritic(binary_vocab, 3)
    with torch.no_grad():
        for k, q in enumerate(table.q):
            critic.table[k].copy_(torch.where(torch.isfinite(q), q, torch.zeros_like(q)).float())
    space = exact.enumerate_sequences(binary_vocab, 3)
    q_t, ref_t = critic(space).double(), table.lookup(space)
    valid = space.mask_t[..., None] & torch.isfinite(ref_t)
    assert torch.allclose(q_t[valid], ref_t[valid])
    for mine, exact_q in zip(critic.masked_tables(), table.q, strict=True):
        assert torch.equal(torch.isinf(mine), torch.isinf(exact_q))


def test_variance_penalty_hand_computed():
    inf = math.inf
    # One row, two positions, V = 5; ids 0 and 1 masked (-inf) like PAD/BOS.
    # t=0: allowed Q = (1, 2, 3): mean 2, Σ (Q − mean)² = 1 + 0 + 1 = 2.
    # t=1: only id 2 allowed (EOS forced), Q = 5: Σ = 0.      λ_var = 0.5 → 0.5·(2 + 0) = 1.0.
    q_t = torch.tensor([[[-inf, -inf, 1.0, 2.0, 3.0], [-inf, -inf, 5.0, -inf, -inf]]], requires_grad=True)
    mask_t = torch.tensor([[True, True]])
    assert variance_penalty(q_t, mask_t, 0.5).tolist() == [1.0]
    # A padding position does not count: mask t=0 out → 0.
    assert variance_penalty(q_t, torch.tensor([[False, True]]), 0.5).tolist() == [0.0]
    variance_penalty(q_t, mask_t, 0.5).sum().backward()
    # ∂/∂Q(w) λ Σ_w' (Q(w') − mean)² = 2λ(Q(w) − mean) = (−1, 0, 1) at t=0; 0 at t=1 and on masked ids.
    assert q_t.grad is not None
    assert q_t.grad.tolist() == [[[0.0, 0.0, -1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]]]


def test_expectation_entropy_and_gather_ignore_masked_ids_without_nan_gradients():
    inf = math.inf
    # π = (·, ·, 0.25, 0.75) on two allowed ids, Q = (·, ·, 4, 8): Σ π Q = 1 + 6 = 7;
    # H = −(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351446…
    log_pi_t = torch.tensor([[[-inf, -inf, math.log(0.25), math.log(0.75)]]], requires_grad=True)
    q_t = torch.tensor([[[-inf, -inf, 4.0, 8.0]]], requires_grad=True)
    assert float(expected_q(log_pi_t, q_t).detach()) == pytest.approx(7.0)
    assert float(entropy_t(log_pi_t).detach()) == pytest.approx(0.5623351446, abs=1e-6)
    (expected_q(log_pi_t, q_t) + entropy_t(log_pi_t) + gather_q(q_t, torch.tensor([[0]]))).sum().backward()
    assert log_pi_t.grad is not None and q_t.grad is not None
    assert torch.isfinite(log_pi_t.grad).all() and torch.isfinite(q_t.grad).all()
    assert float(gather_q(q_t, torch.tensor([[0]])).detach()) == 0.0  # a masked token (PAD on padding) reads 0


def test_target_network_polyak_hand_computed():
    vocab = Vocab(["0", "1"])
    critic = TabularCritic(vocab, 2, init=1.0)
    target = TargetCritic(critic, beta=0.25)
    assert all(not p.requires_grad for p in target.parameters())  # the copy never trains
    with torch.no_grad():
        critic.table[0].fill_(5.0)  # φ = 5, φ̄ = 1 (initialised to the critic's weights, Alg. 3 l. 1)
    batch = SequenceBatch.from_strings(["0"], vocab)
    # Before any update the target still reads φ̄ = 1 at the root.
    assert float(target(batch)[0, 0, vocab.eos]) == 1.0
    target.update()  # φ̄ ← 0.25·5 + 0.75·1 = 2.0
    assert float(target(batch)[0, 0, vocab.eos]) == 2.0
    target.update()  # φ̄ ← 0.25·5 + 0.75·2 = 2.75
    assert float(target(batch)[0, 0, vocab.eos]) == 2.75
    assert not target(batch).requires_grad
    # β = 1: no target network, it reads the critic itself (no copy is kept).
    same = TargetCritic(critic, beta=1.0)
    assert same.copy is None and len(list(same.parameters())) == 0
    assert float(same(batch)[0, 0, vocab.eos]) == 5.0
    with pytest.raises(ValueError, match="β"):
        TargetCritic(critic, beta=0.0)


def test_network_critic_reads_the_source_when_built_to(binary_vocab):
    """With ``reads_source`` a conditional policy's critic is Q(y_<t, ·; x, y*): changing only x changes Q. The
    default (the paper's Q(y_<t, ·; y*)) and unconditional critics ignore x; masking stays the policy's."""
    torch.manual_seed(0)
    source = Vocab(["a", "b", "c"])
    s2s = make_policy("seq2seq", binary_vocab, 3, source_vocab=source, hidden_size=8, embedding_dim=4)
    space = exact.enumerate_sequences(binary_vocab, 3)
    n = space.batch_size
    x = SequenceBatch.from_strings(["a b"] * n, source)
    x_other = SequenceBatch.from_strings(["c"] * n, source)
    reads = NetworkCritic.for_policy(s2s, reads_source=True)
    assert reads.reads_source and not NetworkCritic.for_policy(s2s).reads_source
    with torch.no_grad():
        q_t = reads(space.with_context(x), space)
        q_other = reads(space.with_context(x_other), space)
        log_pi_t = s2s.log_dists(space.with_context(x))
    assert q_t.shape == log_pi_t.shape and torch.equal(torch.isinf(q_t), torch.isinf(log_pi_t))
    finite = torch.isfinite(q_t) & space.mask_t[..., None]
    assert float((q_t - q_other)[finite].abs().min()) > 0  # every entry moves with x
    # The encoder reads x then y*, y*'s ids shifted past the source vocabulary; padding after both.
    enc = reads.encoder_input(space.with_context(x), space)
    row = int(space.lengths.argmax())
    assert enc.lengths[row] == 3 + int(space.lengths[row])
    assert enc.tokens[row, :3].tolist() == x.tokens[row].tolist()
    assert enc.tokens[row, 3:].tolist() == (space.tokens[row] + len(source)).tolist()
    plain = NetworkCritic.for_policy(s2s)
    assert torch.equal(plain(space.with_context(x), space), plain(space.with_context(x_other), space))
    lstm = make_policy("lstm", binary_vocab, 3, hidden_size=8)
    assert not NetworkCritic.for_policy(lstm, reads_source=True).reads_source  # nothing to read: y* only
    with pytest.raises(ValueError, match="reads the source x .* no context"):
        reads(space, space)
    # ERAC's and VAML's default critics follow their ``critic_reads_source`` (default False, the paper's).
    from seqrl.algorithms import make_algorithm

    for name in ("erac", "vaml"):
        quiet = {"lr_decay_metric": None} if name == "erac" else {}  # no validation here: no lr decay
        assert not make_algorithm(name, s2s, reward="hamming", **quiet).critic.reads_source
        algo = make_algorithm(name, s2s, reward="hamming", critic_reads_source=True, **quiet)
        assert algo.critic.reads_source
        loss, _ = algo.loss(algo.collect(space.with_context(x)))
        assert torch.isfinite(loss)
