"""GDC constraint EBMs on an exactly enumerable space (binary strings of ≤ 5 bits): P = a·e^{λ·φ}·1[pointwise]."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.ebm import (
    Constraint,
    ConstraintPotential,
    InfeasibleConstraintError,
    PotentialError,
    Training1Config,
    base_log_ratio,
    checked_log_potential,
    exact_moments,
    rejection_sample,
)
from seqrl.policies import make_policy
from seqrl.rewards.builtin import motif_presence
from seqrl.types import Vocab

MAX_LEN = 6
VOCAB = Vocab(["0", "1"])
ONE = VOCAB.stoi["1"]


def starts_with_1(batch):
    return ((batch.tokens[:, 0] == ONE) & (batch.lengths > 1)).float()


def long(batch):
    return (batch.lengths - 1 >= 4).float()


def has_11(batch):
    return motif_presence(batch, torch.tensor([ONE, ONE])).float()


def impossible(batch):
    return (batch.lengths > MAX_LEN + 5).float()


@pytest.fixture(scope="module")
def setting():
    a = make_policy("lstm", VOCAB, MAX_LEN, hidden_size=16, num_layers=1, dropout=0.0, seed=0).eval()
    space = exact.enumerate_sequences(VOCAB, MAX_LEN)
    return a, space


def exact_p(potential, space):
    return exact.normalize(potential.log_potential(space))


def test_fitted_lambda_meets_distributional_moments(setting):
    a, space = setting
    constraints = [Constraint("starts_with_1", starts_with_1, 0.7), Constraint("long", long, 0.6)]
    a_moments = exact.expectation(exact.policy_distribution(a, space),
                                  torch.stack([starts_with_1(space), long(space)], 1).double())
    assert float((a_moments - torch.tensor([0.7, 0.6], dtype=torch.float64)).abs().min()) > 0.1  # a misses both
    snis = ConstraintPotential(a, constraints)
    # SNIS on one pool of samples of a: λ meets the pool's moments, so E_p φ misses μ̄ by the pool's sampling
    # error. Over pool seeds 0-19 × 5 initialisations of a (the pool is drawn from a seeded generator: 1 or 2
    # threads change nothing here), max |E_p φ − μ̄| with the default 10⁴ samples: mean 0.008, s.d. 0.004, up to
    # 0.016 (above 0.01 for 3 of the 20 pools of this a); with 10⁵: at most 0.0059 (2 inits: mean 0.0023, s.d.
    # 0.0012), 0.01 sits 6 s.d. above. λ = 0 (a itself) misses by > 0.3, asserted above.
    result = snis.fit(Training1Config(resample_every=None, num_samples=100_000))
    assert result.converged and snis.lam.shape == (2,)
    reached = exact_moments(snis, space)  # E_p φ under the exact p of the fitted λ
    assert float((reached - snis.target_moments).abs().max()) < 0.01, reached
    exact_fit = ConstraintPotential(a, constraints)
    exact_fit.fit(space=space)
    assert float((exact_moments(exact_fit, space) - exact_fit.target_moments).abs().max()) < 1e-5
    assert exact_fit.names == ["starts_with_1", "long"]


def test_pointwise_constraint_is_the_filtered_base(setting):
    a, space = setting
    P = ConstraintPotential(a, [Constraint("has_11", has_11, 1.0)])
    assert P.lam.shape == (0,) and P.fit().converged  # nothing to fit: only the support is checked
    mask = has_11(space).bool()
    a_probs = exact.policy_distribution(a, space)
    expected = torch.where(mask, a_probs, torch.zeros_like(a_probs)) / a_probs[mask].sum()
    torch.testing.assert_close(exact_p(P, space), expected, atol=1e-6, rtol=0)
    assert bool((P.log_potential(space)[~mask] == -math.inf).all())
    # μ̄ = 0 is the other pointwise form: P = a·1[φ = 0].
    Q = ConstraintPotential(a, [Constraint("no_11", has_11, 0.0)])
    assert bool((exact_p(Q, space)[mask] == 0).all())
    # Rejection sampling from a with the potential's bound gives only sequences that meet the constraint.
    samples = rejection_sample(a, base_log_ratio(P), 200, P.log_ratio_bound(), chunk=2000,
                               generator=torch.Generator().manual_seed(0)).samples
    assert bool(has_11(samples).bool().all())


def test_hybrid_constraints_filter_and_match_moments(setting):
    a, space = setting
    P = ConstraintPotential(a, [Constraint("has_11", has_11, 1.0), Constraint("starts_with_1", starts_with_1, 0.5)])
    # SNIS over the samples of a that contain '11', fewer than all: with the default 10⁴ samples, |E_p φ − 0.5|
    # over pool seeds 0-19 × 5 initialisations of a: mean 0.009, s.d. 0.006, up to 0.029 (above 0.01 for 6 of the
    # 20 pools of this a); with 2·10⁵: mean 0.002, s.d. 0.0017, at most 0.0058 (2 inits), 0.01 sits 4.6 s.d. above.
    P.fit(Training1Config(resample_every=None, num_samples=200_000))
    p = exact_p(P, space)
    assert float(p[~has_11(space).bool()].sum()) == 0.0
    assert abs(float(exact.expectation(p, starts_with_1(space).double())) - 0.5) < 0.01
    # The potential's log P/a is λ·φ + log 1[support], consistent with log P − log a.
    log_a = exact.policy_log_probs(a, space).detach()
    inside = has_11(space).bool()
    torch.testing.assert_close(P.log_ratio_to_base(space)[inside], (P.log_potential(space) - log_a)[inside],
                               atol=1e-5, rtol=0)
    checked_log_potential(P, space)


def test_errors(setting):
    a, space = setting
    for bad in (1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match=r"moment μ̄ must lie in \[0, 1\]"):
            Constraint("x", long, bad)
    with pytest.raises(ValueError, match="at least one Constraint"):
        ConstraintPotential(a, [])
    with pytest.raises(ValueError, match="names must be unique"):
        ConstraintPotential(a, [Constraint("x", long, 0.5), Constraint("x", has_11, 0.5)])
    # Infeasible: 'starts_with_1' at 50% on a support where every string starts with 0.
    starts_0 = Constraint("starts_with_0", lambda b: 1.0 - starts_with_1(b), 1.0)
    with pytest.raises(InfeasibleConstraintError, match="starts_with_1: target 0.5"):
        ConstraintPotential(a, [starts_0, Constraint("starts_with_1", starts_with_1, 0.5)]).fit()
    # A pointwise constraint that no sample of a (no sequence of the space) satisfies: P = 0 everywhere.
    nowhere = Constraint("impossible", impossible, 1.0)
    with pytest.raises(PotentialError, match="no .* satisfies the pointwise constraints"):
        ConstraintPotential(a, [nowhere]).fit()
    with pytest.raises(PotentialError, match="no sequence of the space satisfies"):
        ConstraintPotential(a, [nowhere]).fit(space=space)
    with pytest.raises(PotentialError, match="support"):
        ConstraintPotential(a, [nowhere, Constraint("long", long, 0.5)]).fit(Training1Config(num_samples=500))
    with pytest.raises(ValueError, match="feature values must lie in \\[0, 1\\]"):
        ConstraintPotential(a, [Constraint("twice", lambda b: 2 * long(b), 0.5)]).log_potential(space)
    with pytest.raises(ValueError, match="expected a \\(63,\\) tensor"):
        ConstraintPotential(a, [Constraint("flat", lambda b: long(b)[:3], 0.5)]).log_potential(space)
    with pytest.raises(ValueError, match="λ must have shape \\(1,\\)"):
        ConstraintPotential(a, [Constraint("long", long, 0.5)], lam=[1.0, 2.0])
