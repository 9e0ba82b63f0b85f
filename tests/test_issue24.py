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
