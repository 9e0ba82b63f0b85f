"""seqrl.proposals: exact proposal densities, the samples-per-reference rule, the importance
weights' fixed points, and the exact token-level E-step ([ERPO] Eq. 4 from soft Q-values)."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import erpo_e_step, erpo_token_e_step, erpo_weights, make_algorithm
from seqrl.algorithms.erpo import erpo_token_e_step_local
from seqrl.policies import make_policy
from seqrl.proposals import (
    hamming_log_prob,
    ngram_log_prob,
    ngram_replace,
    samples_per_reference,
    stratified_log_prob,
    stratified_proposal,
)
from seqrl.rewards import BaseReward, compute_reward, make_reward
from seqrl.rewards.base import candidate_rewards
from seqrl.types import SequenceBatch, Vocab

V2 = Vocab(["0", "1"])
V3 = Vocab(["a", "b", "c"])


def repeat(ref: SequenceBatch, n: int) -> SequenceBatch:
    return SequenceBatch(ref.tokens.expand(n, -1), ref.lengths.expand(n))


def frequencies(samples: SequenceBatch, space: SequenceBatch) -> torch.Tensor:
    index = {tuple(r): i for i, r in enumerate(space.to_lists())}
    counts = torch.zeros(space.batch_size, dtype=torch.float64)
    for row in samples.to_lists():
        counts[index[tuple(row)]] += 1
    return counts / samples.batch_size


@pytest.mark.parametrize("ref_text", ["a c b", "", "b b a c"])
@pytest.mark.parametrize("tau", [1.0, 0.4])
def test_stratified_proposal_is_the_exponentiated_hamming_payoff_over_every_length(ref_text, tau):
    max_len = 5
    space = exact.enumerate_sequences(V3, max_len)
    refs = repeat(SequenceBatch.from_strings([ref_text], V3), space.batch_size)
    log_s = stratified_log_prob(space, refs, V3, tau, max_len)
    R = compute_reward(make_reward("hamming", V3), space, refs).double()
    torch.testing.assert_close(log_s, torch.log_softmax(R / tau, 0), atol=1e-12, rtol=0)


def test_proposal_samplers_match_their_densities():
    max_len, n = 5, 40_000
    space = exact.enumerate_sequences(V2, max_len)
    ref = SequenceBatch.from_strings(["1 0 1 1"], V2)
    refs = repeat(ref, space.batch_size)
    g = torch.Generator().manual_seed(0)
    for samples, log_s in [
        (stratified_proposal(ref, V2, n, 1.0, max_len, g), stratified_log_prob(space, refs, V2, 1.0, max_len)),
        (ngram_replace(ref, V2, n, 2, g), ngram_log_prob(space, refs, V2, 2)),
    ]:
        assert float(log_s.exp().sum()) == pytest.approx(1.0, abs=1e-12)
        assert float((frequencies(samples, space) - log_s.exp()).abs().max()) < 0.01
    # The n-gram proposal is not uniform on its support: y* itself is the likeliest draw.
    log_ng = ngram_log_prob(space, refs, V2, 2)
    support = log_ng > -math.inf
    assert float(log_ng.exp()[support].max() / log_ng.exp()[support].min()) > 2
    # Its support: |y*|'s length, differences inside one window of ≤ 2 positions.
    assert support.sum() == 1 + 4 + 3  # y*, single flips, adjacent double flips
    log_h = hamming_log_prob(space, refs, V2, 0.7)
    assert float(log_h.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool((log_h[space.lengths != ref.lengths] == -math.inf).all())


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("mode", ["sample", "greedy"])
def test_samples_per_reference_is_reference_major(conditional, mode):
    torch.manual_seed(0)
    if conditional:
        src = Vocab(["0", "1"])
        ctx = SequenceBatch.from_strings(["1 0", "0 1 1", "1"], src)
        policy = make_policy("seq2seq", V2, 6, source_vocab=src, hidden_size=8, embedding_dim=4, dropout=0.0)
        batch = SequenceBatch.from_strings(["1 0", "0 1 1", "1"], V2, context=ctx)
    else:
        policy = make_policy("lstm", V2, 6, hidden_size=8, num_layers=1, dropout=0.0)
        batch = SequenceBatch.from_strings(["1 0", "0 1 1", "1"], V2)
    out = samples_per_reference(policy, batch, 4, mode)
    assert out.batch.batch_size == 12
    if conditional:
        assert torch.equal(out.batch.context.tokens, batch.context.repeat_interleave(4).tokens)
    seen = []

    def hook(info):
        seen.append(info.proposed.shape[0])
        return info.proposed

    if mode == "sample":
        assert samples_per_reference(policy, batch, 2, override=hook).batch.batch_size == 6 and seen[0] == 6
    else:
        with pytest.raises(ValueError, match="override"):
            samples_per_reference(policy, batch, 2, mode, override=hook)


def _expected_weight_mass(log_s, log_q_tilde, normalization, M=2):
    """Σ over all M-tuples of i.i.d. draws of s: E[Σ_i w_i 1(y_i = y)] (the M-step's fixed point)."""
    N = log_s.numel()
    grid = torch.cartesian_prod(*[torch.arange(N)] * M)  # (N^M, M)
    w = erpo_weights(torch.zeros(grid.shape), log_q_tilde[grid], 0.0, 1.0, log_s[grid], normalization)
    prob = log_s[grid].sum(1).exp()
    mass = torch.zeros(N, dtype=torch.float64)
    for i in range(M):
        mass.index_add_(0, grid[:, i], prob * w[:, i].double())
    return mass / mass.sum()


def test_leave_one_out_weights_have_fixed_point_q_and_self_normalized_ones_do_not():
    max_len = 4
    space = exact.enumerate_sequences(V2, max_len)
    refs = repeat(SequenceBatch.from_strings(["1 0"], V2), space.batch_size)
    R = compute_reward(make_reward("edit", V2), space, refs).double()
    q = torch.softmax(R, 0)
    log_s = stratified_log_prob(space, refs, V2, 1.0, max_len)  # not q for the edit reward
    loo = _expected_weight_mass(log_s, R, "leave_one_out")
    snis = _expected_weight_mass(log_s, R, "self")
    torch.testing.assert_close(loo, q, atol=1e-10, rtol=0)
    assert exact.tvd(snis, q) > 0.02


def test_reference_among_candidates_is_corrected_by_the_balance_heuristic():
    # RAML with y* always among M = 2 candidates and one proposal draw: the balance-heuristic weights'
    # unnormalized estimator Σ_i r_i 1(y_i = y), r = e^{R/τ}/s_mix, s_mix = 1[y = y*] + s, has mean e^{R/τ}.
    max_len = 4
    space = exact.enumerate_sequences(V2, max_len)
    ref = SequenceBatch.from_strings(["1 0"], V2)
    refs = repeat(ref, space.batch_size)
    R = compute_reward(make_reward("hamming", V2), space, refs).double()
    log_s = stratified_log_prob(space, refs, V2, 1.0, max_len)
    is_ref = torch.tensor([row == ref.to_lists()[0] for row in space.to_lists()])
    log_mix = torch.logaddexp(torch.where(is_ref, 0.0, -math.inf).double(), log_s)
    r = (R - log_mix).exp()
    estimate = log_s.exp() * r  # the sampled candidate, every y
    estimate[is_ref] += r[is_ref]  # the deterministic y*
    torch.testing.assert_close(estimate, R.exp())
    # And the algorithm weighs its candidates exactly so.
    policy = make_policy("lstm", V2, max_len, hidden_size=8, num_layers=1, dropout=0.0)
    algo = make_algorithm("raml", policy, reward="hamming", beta=1.0, num_samples=2, include_reference=True,
                          normalization="self")
    rollout = algo.collect(repeat(ref, 64))
    index = {tuple(row): i for i, row in enumerate(space.to_lists())}
    rows = torch.tensor([index[tuple(row)] for row in rollout.candidates.to_lists()]).view(64, 2)
    expected = torch.softmax(R[rows] - log_mix[rows], 1).float()
    torch.testing.assert_close(rollout.weights, expected)
    with pytest.raises(ValueError, match="leave_one_out"):
        make_algorithm("raml", policy, reward="hamming", include_reference=True)


class _PolicyPlusReward(BaseReward):
    """R'(y) = α log p_θ(y) + R(y; y*): the per-token reward of Eq. 4 summed along y."""

    name = "policy_plus_reward"

    def __init__(self, vocab, policy, reward, alpha):
        super().__init__(vocab)
        self.policy, self.reward, self.alpha = policy, reward, alpha

    def score(self, hyps, refs):
        with torch.no_grad():
            logp = self.policy.sequence_log_prob(hyps).double()
        return self.alpha * logp + compute_reward(self.reward, hyps, refs).double()


@pytest.mark.parametrize("alpha,beta", [(0.0, 1.0), (0.0, 0.4), (0.7, 0.3), (1.0, 0.5)])
def test_token_e_step_from_soft_q_has_eq2_marginal(alpha, beta):
    torch.manual_seed(0)
    max_len = 5
    space = exact.enumerate_sequences(V2, max_len)
    ref = SequenceBatch.from_strings(["1 0 1"], V2)
    policy = make_policy("lstm", V2, max_len, hidden_size=8, num_layers=1, dropout=0.0).eval()
    reward = make_reward("hamming", V2)
    R = compute_reward(reward, space, repeat(ref, space.batch_size)).double()
    log_p = exact.policy_log_probs(policy, space).detach().double()
    target = erpo_e_step(log_p, R, alpha, beta)  # Eq. 2
    table = exact.soft_q_values(_PolicyPlusReward(V2, policy, reward, alpha), V2, max_len, alpha + beta, ref)
    log_q_t = erpo_token_e_step(table.lookup(space), alpha, beta)  # Eq. 4, exact
    per_token = log_q_t.gather(2, space.tokens[..., None]).squeeze(2)
    marginal = torch.where(space.mask_t, per_token, torch.zeros_like(per_token)).sum(1)
    torch.testing.assert_close(marginal.exp(), target.exp(), atol=1e-6, rtol=0)
    # The per-token approximation is not Eq. 4: its marginal is measurably off.
    with torch.no_grad():
        log_dists = policy.log_dists(space).double()
    delta = torch.zeros_like(log_dists)  # ΔR(w | y_<t) for every w, by the partial-sequence convention
    for t in range(space.tokens.shape[1]):
        delta[:, t] = candidate_rewards(reward, space.tokens[:, :t], repeat(ref, space.batch_size), V2).double()
    approx_t = erpo_token_e_step_local(log_dists, delta, alpha, beta).gather(2, space.tokens[..., None]).squeeze(2)
    approx = torch.where(space.mask_t, approx_t, torch.zeros_like(approx_t)).sum(1).exp()
    assert exact.tvd(approx, target.exp()) > 0.05
