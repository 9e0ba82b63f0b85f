"""seqrl.exact: enumeration, divergences, and the soft-optimal Q of [VAML/ERAC] Prop. 1."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.ebm.base import MotifProcessPotential
from seqrl.policies import make_policy
from seqrl.rewards import compute_reward, make_reward
from seqrl.types import SequenceBatch


def test_enumeration_counts_and_order(binary_vocab):
    space = exact.enumerate_sequences(binary_vocab, 4)
    assert space.batch_size == 1 + 2 + 4 + 8 == exact.space_size(2, 4)
    assert space.to_lists()[:4] == [[2], [3, 2], [4, 2], [3, 3, 2]]
    space.validate(binary_vocab, max_len=4)
    with pytest.raises(exact.SpaceTooLargeError):
        exact.enumerate_sequences(binary_vocab, 40)


def test_divergences_hand_computed():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert exact.kl(p, q) == pytest.approx(math.log(2))  # Σ ½ log(½/¼)
    assert exact.kl(q, p) == math.inf
    assert exact.tvd(p, q) == pytest.approx(0.5)
    assert exact.entropy(q) == pytest.approx(1.5 * math.log(2))
    assert float(exact.expectation(q, torch.tensor([1.0, 2.0, 4.0]))) == pytest.approx(2.75)


def test_log_partition_of_motif_process(binary_vocab):
    # P(x) = 2^-3 on length-3 strings containing "11": 110, 011, 111 → Z = 3/8.
    space = exact.enumerate_sequences(binary_vocab, 4)
    logP = MotifProcessPotential(binary_vocab, "11", 3).log_potential(space)
    assert float(exact.log_partition(logP)) == pytest.approx(math.log(3 / 8))
    assert float(exact.normalize(logP).max()) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="-inf everywhere"):
        exact.log_partition(torch.full((5,), -math.inf))


def test_soft_optimal_q_induces_exponentiated_payoff(binary_vocab):
    # [VAML/ERAC] Prop. 1: Π_t softmax(Q_R/τ)(y_t) = exp(R(y)/τ) / Σ exp(R/τ).
    max_len, tau = 5, 0.7
    reward = make_reward("hamming", binary_vocab)
    ref = SequenceBatch.from_strings(["1 0 1"], binary_vocab)
    table = exact.soft_q_values(reward, binary_vocab, max_len, tau, reference=ref)
    space = exact.enumerate_sequences(binary_vocab, max_len)
    R = compute_reward(reward, space, SequenceBatch(ref.tokens.expand(space.batch_size, -1),
                                                    ref.lengths.expand(space.batch_size)))
    target = torch.log_softmax(R.double() / tau, 0)
    torch.testing.assert_close(table.sequence_log_probs(space), target, atol=1e-9, rtol=1e-9)
    # Terminal condition (Eq. 6, 8): Q(ŷ, eos) = R(ŷ+eos) − R(ŷ) = 0 below the root.
    assert torch.allclose(table.q[2][:, binary_vocab.eos], torch.zeros(4, dtype=torch.float64))
    # V(∅) = τ log Σ_y exp(R(y)/τ) (the root, with R(∅) = 0).
    assert float(table.v[0][0]) == pytest.approx(tau * float(torch.logsumexp(R.double() / tau, 0)))


def test_hard_max_and_policy_evaluation(binary_vocab):
    reward = make_reward("motif", binary_vocab, motif="11")
    hard = exact.soft_q_values(reward, binary_vocab, 4, 0.0)
    assert float(hard.v[0][0]) == 1.0  # the best sequence contains the motif
    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8).eval()
    tau = 0.5
    table = exact.soft_q_values(reward, binary_vocab, 4, tau, policy=policy)
    # V^π(∅) = E_π[R] + τ H(π) over sequences (soft value of the policy, γ = 1).
    space = exact.enumerate_sequences(binary_vocab, 4)
    probs = exact.policy_distribution(policy, space)
    expected = float(exact.expectation(probs, compute_reward(reward, space).double())) + tau * exact.entropy(probs)
    assert float(table.v[0][0]) == pytest.approx(expected, abs=1e-6)  # float32 policy


def test_policy_log_probs_checks_normalization(binary_vocab):
    policy = make_policy("lstm", binary_vocab, 6, hidden_size=8).eval()
    with pytest.raises(ValueError, match="max_len"):
        exact.policy_log_probs(policy, exact.enumerate_sequences(binary_vocab, 4))


def test_lookup_matches_tables(binary_vocab):
    reward = make_reward("motif", binary_vocab, motif="1")
    table = exact.soft_q_values(reward, binary_vocab, 4, 1.0)
    batch = SequenceBatch.from_strings(["1 0"], binary_vocab)
    q_t = table.lookup(batch)
    assert torch.equal(q_t[0, 0], table.q[0][0])
    assert torch.equal(q_t[0, 1], table.q[1][1])  # prefix "1" is index 1 at level 1
    assert torch.equal(q_t[0, 2], table.q[2][2])  # prefix "1 0" → digits (1, 0) → 2


def test_exact_policy_quantities_use_eval_mode(binary_vocab):
    # A 2-layer LSTM has dropout 0.2 and starts in training mode: π must be the eval-mode distribution,
    # and the policy's mode must come back unchanged.
    torch.manual_seed(0)
    policy = make_policy("lstm", binary_vocab, 5, hidden_size=16, num_layers=2)
    assert policy.training
    space = exact.enumerate_sequences(binary_vocab, 5)
    probs = exact.policy_distribution(policy, space)
    logp = exact.policy_log_probs(policy, space)
    assert policy.training and logp.requires_grad
    reward = make_reward("motif", binary_vocab, motif="11")
    table = exact.soft_q_values(reward, binary_vocab, 5, 0.5, policy=policy)
    assert policy.training
    policy.eval()
    with torch.no_grad():
        truth = policy.sequence_log_prob(space).double()
    torch.testing.assert_close(probs, truth.exp(), atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(logp.detach().double(), truth, atol=1e-6, rtol=1e-6)
    evaluated = exact.soft_q_values(reward, binary_vocab, 5, 0.5, policy=policy)
    torch.testing.assert_close(table.v[0], evaluated.v[0])
    assert abs(float(probs.sum()) - 1) <= exact.MASS_TOLERANCE


def test_policy_log_probs_mass_check_is_tight(binary_vocab):
    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8).eval()
    space = exact.enumerate_sequences(binary_vocab, 4)

    class Leaky(torch.nn.Module):  # π off by a factor 1 − 1e-4 (a dropout-sized error passed the old 1e-3 check)
        device = policy.device

        def sequence_log_prob(self, batch):
            return policy.sequence_log_prob(batch) + math.log1p(-1e-4)

    with pytest.raises(ValueError, match="mass"):
        exact.policy_log_probs(Leaky(), space)
