"""The control suite ([GDC++] Sec. 4): its metrics on hand-computable inputs and by exact enumeration, its rows,
and a tiny end-to-end bench through the runner."""

import json
import math

import pytest
import torch

from seqrl import exact
from seqrl.bench.control import (
    ControlSettings,
    ControlSuite,
    ControlTarget,
    ControlTask,
    PointwiseReward,
    advantage_stats,
    control_rows,
    control_tasks,
    divergences_from_pool,
    dpg_advantage,
    gradient_variance,
)
from seqrl.bench.runner import run_suite
from seqrl.ebm.constraints import Constraint, ConstraintPotential
from seqrl.ebm.sampling import base_log_ratio, draw, estimate_log_z
from seqrl.envs.grammar import Grammar, contains_any
from seqrl.metrics import distinct_n, self_bleu
from seqrl.policies import make_policy
from seqrl.types import SequenceBatch

MAX_LEN = 5  # binary strings of at most 4 symbols: 31 sequences


# --- Distinct-n and Self-BLEU ------------------------------------------------------------------------------
def test_distinct_n_by_hand():
    # "a a a b": unigrams {a, b} of 4 → 0.5; bigrams (a a), (a a), (a b): 2 distinct of 3.
    assert distinct_n(["a a a b"], 1) == pytest.approx(0.5)
    assert distinct_n(["a a a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b c", "a a"], 1) == pytest.approx((1.0 + 0.5) / 2)  # a mean over samples
    assert distinct_n(["a b c", "a"], 2) == pytest.approx(1.0)  # "a" has no bigram: skipped
    assert math.isnan(distinct_n(["a"], 3))
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(["a"], 0)
    with pytest.raises(ValueError, match="no samples"):
        distinct_n([], 1)


def test_self_bleu_identical_and_disjoint_sets():
    same = ["the cat sat on the mat today"] * 4
    assert self_bleu(same, 5) == pytest.approx(100.0)
    disjoint = ["a b c d e f", "g h i j k l", "m n o p q r"]  # no word in common
    assert self_bleu(disjoint, 5) == pytest.approx(0.0)
    assert self_bleu(disjoint, 5, smooth="none") == pytest.approx(0.0)
    mixed = self_bleu(["a b c d e f", "a b c d e f", "m n o p q r"], 5)
    assert 0.0 < mixed < 100.0
    with pytest.raises(ValueError, match="at least 2"):
        self_bleu(["a b"], 5)


# --- variance diagnostics and divergences by enumeration ----------------------------------------------------
@pytest.fixture
def tiny(binary_vocab):
    space = exact.enumerate_sequences(binary_vocab, MAX_LEN)
    a = make_policy("lstm", binary_vocab, MAX_LEN, hidden_size=8, num_layers=1, dropout=0.0, seed=1)
    pi = make_policy("lstm", binary_vocab, MAX_LEN, hidden_size=8, num_layers=1, dropout=0.0, seed=2)
    ones = torch.tensor(binary_vocab.encode(["1"], add_eos=False))
    has_one = Constraint("has_one", lambda b: contains_any(b, ones).double(), 0.7)
    return space, a, pi, has_one, ones


def test_mean_abs_advantage_is_twice_tvd_by_enumeration(tiny):
    """E_q|A| = 2·TVD(p, π) with A = p/q − π/q ([GDC++] Eq. 21), exactly, for any q that covers p and π."""
    space, a, pi, has_one, _ = tiny
    P = ConstraintPotential(a, [has_one])
    P.fit(space=space)
    log_p_unnorm = P.log_potential(space).double()
    log_z = float(exact.log_partition(log_p_unnorm))
    q = make_policy("lstm", a.vocab, MAX_LEN, hidden_size=8, num_layers=1, dropout=0.0, seed=3)
    log_q = exact.policy_log_probs(q, space).detach().double()
    log_pi = exact.policy_log_probs(pi, space).detach().double()
    advantage = dpg_advantage(log_p_unnorm, log_z, log_q, log_pi, baseline=True)
    stats = advantage_stats(advantage, weights=log_q.exp())
    p = exact.normalize(log_p_unnorm)
    assert stats["mean_abs_a"] == pytest.approx(2 * exact.tvd(p, log_pi.exp()), abs=1e-10)
    # The baseline centres A: E_q A = Σ p − Σ π = 0 (to float32's Σ π = 1 ± 1e-6; so are the checks below).
    assert float((log_q.exp() * advantage).sum()) == pytest.approx(0.0, abs=1e-6)
    # Without the baseline A = p/q, whose q-mean is 1: Var(A) = Σ p²/q − 1.
    plain = advantage_stats(dpg_advantage(log_p_unnorm, log_z, log_q, log_pi, baseline=False), weights=log_q.exp())
    assert plain["var_a"] == pytest.approx(float((p**2 / log_q.exp()).sum()) - 1.0, rel=1e-5)
    assert plain["mean_abs_a"] == pytest.approx(1.0, abs=1e-10)


def test_advantage_stats_by_hand_and_bad_input():
    stats = advantage_stats(torch.tensor([1.0, -1.0, 3.0, -3.0]))  # mean 0: Var = (1+1+9+9)/4 = 5, E|A| = 2
    assert stats == {"var_a": pytest.approx(5.0), "mean_abs_a": pytest.approx(2.0)}
    with pytest.raises(ValueError, match="non-empty"):
        advantage_stats(torch.zeros(0))
    with pytest.raises(ValueError, match="\\[B\\]"):
        dpg_advantage(torch.zeros(3), 0.0, torch.zeros(2), torch.zeros(3), True)


def test_gradient_variance_of_two_samples_by_hand(tiny):
    """With two equally weighted samples, Var(G) = E‖G‖² − ‖E G‖² = ‖G₁ − G₂‖²/4, G_i = A_i ∇ log π(x_i)."""
    _, _, pi, _, _ = tiny
    batch = SequenceBatch.from_lists([[3, 4, 2], [4, 2]], pad=0)
    advantage = torch.tensor([0.7, -1.3], dtype=torch.float64)
    grads = []
    for i in range(2):
        pi.zero_grad()
        pi.sequence_log_prob(batch.index([i]))[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in pi.parameters()]).double() * advantage[i])
    pi.zero_grad()
    expected = float(((grads[0] - grads[1]) ** 2).sum()) / 4
    assert gradient_variance(pi, batch, advantage) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("moment", [0.7, 1.0])
def test_pool_divergences_match_exact_enumeration(tiny, moment):
    """KL(p‖π) and TVD(p, π) by importance sampling from a ([GDC++] App. D) land near the exact values, for a
    distributional constraint and for a pointwise one (support rows only, and π's mass outside given)."""
    space, a, pi, has_one, ones = tiny
    constraint = Constraint("has_one", has_one.feature, moment)
    P = ConstraintPotential(a, [constraint])
    P.fit(space=space)
    pool = draw(a, 40_000, base_log_ratio(P), torch.Generator().manual_seed(0))
    task = ControlTask("t", "test", (constraint,))
    target = ControlTarget(task, P, None, pool, estimate_log_z(pool.log_ratio))  # type: ignore[arg-type]
    p = exact.normalize(P.log_potential(space))
    pi_x = exact.policy_distribution(pi, space)
    estimate = divergences_from_pool(pi, target)
    assert estimate["kl_p_pi"] == pytest.approx(exact.kl(p, pi_x), abs=0.02)
    assert estimate["tvd"] == pytest.approx(exact.tvd(p, pi_x), abs=0.02)
    outside = float(pi_x[contains_any(space, ones).double() != moment].sum()) if moment == 1.0 else 0.0
    if moment == 1.0:
        given = divergences_from_pool(pi, target, mass_outside=outside)
        assert given["tvd"] == pytest.approx(exact.tvd(p, pi_x), abs=0.02)
        assert given["kl_p_pi"] == estimate["kl_p_pi"]


# --- rows, rewards and settings --------------------------------------------------------------------------------
def test_reward_maximizers_run_on_pointwise_tasks_only():
    tasks = control_tasks(Grammar().vocab)
    rows = {r.label: r for r in control_rows()}
    assert list(rows) == ["reinforce", "kl_control", "dpg_off", "gdcpp", "fdpg[kl]", "fdpg[rkl]", "fdpg[js]",
                          "fdpg[tv]", "fdpg[chi2]"]
    for name in ("reinforce", "kl_control"):
        assert [t for t in tasks if rows[name].runs_on(tasks[t])] == ["word_amazing", "wordlist_politics"]
    assert all(rows["gdcpp"].runs_on(t) for t in tasks.values())
    # Reverse KL and χ² are infinite where π > 0 = P: distributional tasks only.
    assert [t for t in tasks if rows["fdpg[rkl]"].runs_on(tasks[t])] == ["female_50", "topics_25"]


def test_pointwise_reward_is_the_indicator_of_the_constraints():
    g = Grammar()
    tasks = control_tasks(g.vocab)
    reward = PointwiseReward(g.vocab, tasks["word_amazing"].constraints)
    batch = SequenceBatch.from_strings(["she saw the amazing woman", "he voted"], g.vocab)
    assert reward(batch).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="pointwise"):
        PointwiseReward(g.vocab, tasks["female_50"].constraints)


def test_settings_reject_unknown_names():
    with pytest.raises(ValueError, match="unknown control task"):
        ControlSettings(tasks=("nope",))
    with pytest.raises(ValueError, match="divergence"):
        ControlSettings(divergences=("hellinger",))
    with pytest.raises(ValueError, match="steps"):
        ControlSettings(steps=0)


# --- end to end ----------------------------------------------------------------------------------------------
TINY_BENCH = {"corpus_size": 1000, "lm_hidden_size": 16, "lm_embedding_dim": 8, "lm_epochs": 2,
              "tasks": ("word_amazing", "female_50"), "steps": 4, "samples_per_step": 64, "eval_every": 2,
              "eval_samples": 32, "self_bleu_samples": 8, "pool_size": 1000, "lambda_samples": 1000,
              "variance_samples": 4, "sweep_tasks": ("word_amazing",), "sweep_batch_sizes": (64,),
              "sweep_samples": 128, "sweep_eval_every_samples": 64}


def test_tiny_control_bench_end_to_end(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQRL_CACHE", str(tmp_path / "cache"))
    lines: list[str] = []
    out = tmp_path / "out"
    payload = run_suite("control", seeds=[0, 1], algos=["reinforce", "gdcpp"], device="cpu", out=out,
                        progress=False, settings=TINY_BENCH, echo=lines.append)
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert payload["suite"] == "control" and len(runs) == len(payload["runs"])
    got = sorted((r["params"]["experiment"], r["params"]["task"], r["algorithm"], r["seed"]) for r in runs)
    expected = sorted([("main", "word_amazing", algo, s) for algo in ("reinforce", "gdcpp") for s in (0, 1)]
                      + [("main", "female_50", "gdcpp", s) for s in (0, 1)]  # no REINFORCE: distributional
                      + [("sweep", "word_amazing", "gdcpp", s) for s in (0, 1)])
    assert got == expected
    for r in runs:
        m = r["metrics"]
        assert m["samples"] == r["params"]["steps"] * r["params"]["batch_size"]  # equal budgets per row
        for key in ("kl_p_pi", "kl_pi_a", "tvd", "distinct_1", "distinct_2", "distinct_3", "self_bleu_5",
                    "moment_gap", "valid_ce"):
            assert m[key] is not None and math.isfinite(m[key]), (r["algorithm"], key)
        if r["algorithm"] == "gdcpp":
            assert m["var_a"] >= 0 and m["var_g"] >= 0 and m["mean_abs_a"] >= 0  # DPG rows' diagnostics
        else:
            assert "var_a" not in m and m["phi_amazing"] >= 0
    assert (out / "control_curves.json").is_file() and (out / "control_curves_word_amazing.png").is_file()
    assert (out / "control_batch_sweep.png").is_file() and (out / "control_variance.png").is_file()
    report = "\n".join(lines)
    assert "Batch-size sweep" in report and "against dpg_off" not in report  # no GDC row ran: no pairs
    # the suite reads its rows' algorithms from the registry
    assert set(ControlSuite().available_algos()) >= {"reinforce", "kl_control", "dpg_off", "gdcpp"}
