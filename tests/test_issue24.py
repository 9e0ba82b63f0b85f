"""Issue #24: the options and presets that let the benchmarks run each paper's protocol (fast, no timing)."""

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import make_algorithm
from seqrl.ebm import GAMPotential, MotifFeatures, base_log_ratio, rejection_sample
from seqrl.envs import MotifTask
from seqrl.policies import make_policy


@pytest.fixture(scope="module")
def motif_gam():
    """An untrained LSTM r over 6-bit strings and a GAM over it with a moderate λ."""
    torch.manual_seed(0)
    task = MotifTask("101", 6, train_size=40, valid_size=40, test_size=40, seed=0)
    r = make_policy("lstm", task.vocab, task.max_len, hidden_size=16, num_layers=1, dropout=0.0).eval()
    lam = torch.tensor([1.0, -0.5, 0.7, 0.3, 0.2, 1.0, -1.0])
    return task, r, GAMPotential(r, MotifFeatures(task.vocab, "101", "Mv1001111", 6), lam)


def test_rejection_budget_draws_exactly_the_budget_and_keeps_every_accepted(motif_gam):
    task, r, P = motif_gam
    gen = torch.Generator().manual_seed(0)
    result = rejection_sample(r, base_log_ratio(P), 1, P.log_ratio_bound(), chunk=700, budget=3000, generator=gen)
    assert result.proposed == 3000
    assert 0 < result.samples.batch_size < 3000
    assert result.acceptance_rate == pytest.approx(result.samples.batch_size / 3000)
    # the acceptance rate is Z/β: exact on this enumerable space (binomial, 5 standard errors)
    space = exact.enumerate_sequences(task.vocab, task.max_len)
    z = float(torch.logsumexp(P.log_potential(space).detach(), 0).exp())  # Z = Σ_x r(x)·e^{λ·φ(x)}
    rate = z / float(torch.tensor(P.log_ratio_bound()).exp())
    assert abs(result.acceptance_rate - rate) < 5 * (rate * (1 - rate) / 3000) ** 0.5


def test_distill_proposal_budget_counts_draws_like_dpg_episodes(motif_gam):
    task, r, P = motif_gam
    policy = make_policy("lstm", task.vocab, task.max_len, hidden_size=16, num_layers=1, dropout=0.0)
    alg = make_algorithm("distill", policy, potential=P, proposal=r, proposal_budget=2000, num_samples=5)
    data = alg.setup(None)
    assert alg.summary()["episodes"] == 2000
    assert data.batch_size > 5  # every accepted sample, not num_samples


def test_gam_suite_distill_budget_episodes_sets_training2_budget():
    from dataclasses import replace

    from seqrl.bench.gam import QUICK_SETTINGS, training2_row

    class Fitted:  # what training2_row reads of a fitted GAM
        potential = None

    task = MotifTask("101", 6, train_size=10, valid_size=10, test_size=10, seed=0)
    r = make_policy("lstm", task.vocab, task.max_len, hidden_size=8, num_layers=1, dropout=0.0)
    st = replace(QUICK_SETTINGS, distill_budget="episodes")
    row = training2_row("distill", task, r, Fitted(), st)
    assert row.settings["proposal_budget"] == st.dpg_steps * st.batch_size == 200 * 500
    assert "proposal_budget" not in training2_row("distill", task, r, Fitted(), QUICK_SETTINGS).settings


# --- BLEU: the fast exact path, and the reference-length pay-off ([VAML/ERAC] Sec. 6.1) --------------------------
def _random_pairs(vocab, n, seed, max_len=14):
    from seqrl.types import SequenceBatch

    g = torch.Generator().manual_seed(seed)
    symbols = torch.tensor(vocab.symbol_ids)

    def batch(lo):
        lengths = torch.randint(lo, max_len, (n,), generator=g)
        tokens = torch.zeros(n, max_len + 1, dtype=torch.long)
        for i, k in enumerate(lengths.tolist()):
            tokens[i, :k] = symbols[torch.randint(0, len(symbols), (k,), generator=g)]
            tokens[i, k] = vocab.eos
        return SequenceBatch(tokens, lengths + 1)

    return batch(0), batch(1)


def test_bleu_exact_path_equals_sacrebleu_and_the_generic_token_forms():
    from seqrl.rewards import candidate_rewards, compute_reward, make_reward, prefixes_with_eos, token_rewards
    from seqrl.rewards.base import _repeat_rows
    from seqrl.types import Vocab

    vocab = Vocab(["a", "b", "c", "la", "d'"])
    hyps, refs = _random_pairs(vocab, 40, 0)
    for name in ("bleu", "bleu_scaled"):
        reward = make_reward(name, vocab)
        assert reward._exact
        slow = make_reward(name, vocab)
        slow._exact = False  # sacrebleu on strings, the reference implementation
        assert torch.equal(compute_reward(reward, hyps, refs), compute_reward(slow, hyps, refs))
        # every prefix in one pass == the generic one reward call per prefix
        B, T = hyps.tokens.shape
        generic = compute_reward(slow, prefixes_with_eos(hyps, vocab.eos), _repeat_rows(refs, T)).view(B, T)
        assert torch.allclose(reward.prefix_scores(hyps, refs).float(), generic, atol=1e-6)
        assert torch.allclose(token_rewards(reward, hyps, refs), token_rewards(slow, hyps, refs), atol=1e-6)
        for t in (0, 3, 7):
            prefix = hyps.tokens[:, :t]
            fast = candidate_rewards(reward, prefix, refs, vocab)
            assert torch.allclose(fast, candidate_rewards(slow, prefix, refs, vocab), atol=1e-6)


def test_bleu_scaled_is_bleu_times_reference_length():
    from seqrl.rewards import compute_reward, make_reward
    from seqrl.types import Vocab

    vocab = Vocab(["a", "b", "c", "la"])
    hyps, refs = _random_pairs(vocab, 20, 1)
    plain = compute_reward(make_reward("bleu", vocab), hyps, refs)
    scaled = compute_reward(make_reward("bleu_scaled", vocab), hyps, refs)
    assert torch.allclose(scaled, plain * (refs.lengths - 1).float())
    assert make_reward("bleu_scaled", vocab).corpus_score(hyps, refs) == make_reward("bleu", vocab).corpus_score(
        hyps, refs)
