"""Training-1 convergence, the exact rejection bound, DPG's Ẑ normalizer and its overflow-free loss
(issue 12 items 2, 5a, 5b, 6), on enumerable motif spaces."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import dpg_loss, make_algorithm
from seqrl.ebm import GAMPotential, MotifFeatures, Training1Config, exact_moments, fit_lambda
from seqrl.envs import MotifTask
from seqrl.policies import make_policy
from seqrl.types import concat_batches

MOTIF, N = "1100", 7


@pytest.fixture(scope="module")
def motif_setting():
    """r: an untrained LSTM over ≤ 7-bit strings (255 of them), the space, and the motif task."""
    torch.manual_seed(0)
    task = MotifTask(MOTIF, N, train_size=100, valid_size=10, test_size=10, seed=0)
    r = make_policy("lstm", task.vocab, task.max_len, hidden_size=16, num_layers=1, dropout=0.0).eval()
    space = exact.enumerate_sequences(task.vocab, task.max_len)
    return task, r, space


def gam(task, r, mask, lam=None):
    return GAMPotential(r, MotifFeatures(task.vocab, MOTIF, mask, N), lam)


@pytest.mark.parametrize("mask", ["1001111", "Mv1111111", "Mv0110001"])
def test_training1_exact_converges_by_default(motif_setting, mask):
    task, r, space = motif_setting
    data = concat_batches([space, r.sample(200, generator=torch.Generator().manual_seed(0)).batch])
    P = gam(task, r, mask)
    result = fit_lambda(P, data, Training1Config(method="exact"), space=space)
    assert result.converged and result.steps < 50
    residual = float((exact_moments(P, space) - result.data_moments).abs().max())
    assert residual <= 1e-5, residual


@pytest.mark.parametrize("mask", ["1001111", "Mv0110001"])
def test_training1_exact_with_features_at_their_edge(motif_setting, mask):
    # Every training string has the motif ("1100", hence "00") and n bits: data means 1 for the motif
    # feature and (1, 1) for (M, v), so those λ go to +-inf; the fit stops at the tolerance with λ finite.
    task, r, space = motif_setting
    P = gam(task, r, mask)
    result = fit_lambda(P, task.split("train"), Training1Config(method="exact"), space=space)
    assert result.converged and bool(torch.isfinite(result.lam).all())
    assert float((exact_moments(P, space) - result.data_moments).abs().max()) <= 1e-5


def test_training1_snis_single_pool_matches_pool_moments(motif_setting):
    task, r, space = motif_setting
    data = concat_batches([space, r.sample(200, generator=torch.Generator().manual_seed(0)).batch])
    P = gam(task, r, "Mv1111111")
    result = fit_lambda(P, data, Training1Config(method="snis", num_samples=4000, resample_every=None))
    assert result.converged and result.history[-1] < 1e-6
    # The pool's moments are within sampling noise of the exact ones.
    assert float((exact_moments(P, space) - result.data_moments).abs().max()) < 0.05


@pytest.mark.parametrize("mask", ["Mv1111111", "1001111", "Mv0110001"])
def test_log_ratio_bound_is_the_exact_max(motif_setting, mask):
    task, r, space = motif_setting
    g = torch.Generator().manual_seed(3)
    samples = r.sample(300, generator=g).batch
    for _ in range(10):
        P = gam(task, r, mask, 2 * torch.randn(MotifFeatures(task.vocab, MOTIF, mask, N).dim, generator=g))
        log_ratio = P.log_ratio_to_base(space).double()
        assert P.log_ratio_bound() == pytest.approx(float(log_ratio.max()), abs=1e-5)
        assert float(P.log_ratio_to_base(samples).max()) <= P.log_ratio_bound() + 1e-5


def test_log_ratio_bound_tight_on_long_motif():
    # The paper-sized features: Σ max(λ_i, 0) would give 3.8; no string has every positive feature.
    task = MotifTask("1000101000101", 14, train_size=10, valid_size=10, test_size=10)
    f = MotifFeatures(task.vocab, "1000101000101", "1111111", 14)
    lam = torch.tensor([1.5, -0.5, 0.7, 0.3, 0.2, 1.0, 0.1])
    space = exact.enumerate_sequences(task.vocab, task.max_len)  # 32767 strings
    truth = float((f(space).double() @ lam.double()).max())
    assert f.max_dot(lam, task.max_len - 1) == pytest.approx(truth, abs=1e-6)
    assert truth < 3.8 - 0.5


def test_dpg_normalizer_z_from_earlier_batches_or_all(motif_setting):
    task, r, space = motif_setting
    P = gam(task, r, "1001111", torch.tensor([2.0, 0.5, -1.0, 0.5, 0.3]))
    policy = make_policy("lstm", task.vocab, task.max_len, hidden_size=16, num_layers=1, dropout=0.0)
    for name in ("gdcpp",):  # dpg_off/dpg take the same path without the baseline
        algo = make_algorithm(name, policy, potential=P, proposal=r, valid=space, samples_per_step=64,
                              z_from="earlier")
        first = algo.collect(None)
        second = algo.collect(None)
        log_z_first = float(torch.logsumexp(first.log_weight.double(), 0) - math.log(64))
        loss, metrics = algo.loss(second)
        assert metrics["log_z"] == pytest.approx(log_z_first)
        # The default averages every batch, the current one included.
        both = torch.cat([first.log_weight, second.log_weight]).double()
        assert algo.log_z() == pytest.approx(float(torch.logsumexp(both, 0) - math.log(128)))
        logp = policy.sequence_log_prob(second.batch)
        log_pi_over_q = logp.detach() - second.log_q if name == "gdcpp" else None
        expected, _ = dpg_loss(logp, second.log_weight, log_z_first if name == "gdcpp" else None, log_pi_over_q,
                               math.exp(log_z_first))
        torch.testing.assert_close(loss, expected)
        default = make_algorithm(name, policy, potential=P, proposal=r, valid=space, samples_per_step=64)
        default.collect(None)
        rollout = default.collect(None)
        assert default.loss(rollout)[1]["log_z"] == pytest.approx(default.log_z())  # this batch included


@pytest.mark.parametrize("baseline", [False, True])
def test_dpg_loss_with_huge_log_weights_is_finite_and_exact(baseline):
    torch.manual_seed(0)
    theta = torch.randn(4, requires_grad=True)
    log_w = torch.tensor([100.0, 99.0, 101.5, 95.0])
    log_n = float(torch.logsumexp(log_w.double(), 0) - math.log(4))
    lpq = torch.tensor([0.1, -0.3, 0.2, 0.0]) if baseline else None
    log_z = 100.2 if baseline else None
    for kwargs in (dict(log_normalizer=log_n), dict(normalizer=math.exp(log_n))):
        theta.grad = None
        logp = torch.log_softmax(theta, 0)  # [B] log π of 4 sequences
        loss, adv = dpg_loss(logp, log_w, log_z, lpq, **kwargs)
        loss.backward()
        # float64 reference
        a = (log_w.double() - log_n).exp()
        if baseline:
            a = a - (log_z + lpq.double() - log_n).exp()
        theta64 = theta.detach().double().requires_grad_()
        ref = -(a * torch.log_softmax(theta64, 0)).mean()
        ref.backward()
        assert torch.isfinite(loss) and bool(torch.isfinite(theta.grad).all())
        torch.testing.assert_close(loss.double(), ref.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(theta.grad.double(), theta64.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(adv.double(), a, rtol=1e-5, atol=1e-6)
