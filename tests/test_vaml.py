"""VAML ([VAML/ERAC] Sec. 4.1, App. B.2) on exactly enumerable spaces: the phase-1 target and the κ mix by hand,
soft Q-learning → Q_R, and phase 2 with the exact Q_R → softmax(R/τ).

Prop. 1 itself (softmax(Q_R/τ) of ``seqrl.exact.soft_q_values`` has sequence marginal softmax(R/τ)) is
tests/test_exact.py::test_soft_optimal_q_induces_exponentiated_payoff.
"""

import math

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import VAML, make_algorithm, soft_q_loss, soft_q_targets, vaml_loss, vaml_weights
from seqrl.algorithms.base import Offer
from seqrl.critics import TabularCritic
from seqrl.policies import make_policy
from seqrl.rewards import compute_reward, make_reward
from seqrl.training import FitConfig, fit
from seqrl.types import SequenceBatch, Vocab

FAST = dict(progress=False, device="cpu")
V2 = Vocab(["0", "1"])
MAX_LEN = 4  # 2 symbols + EOS, ≤ 3 symbols: 15 sequences, 15 prefixes
REF = SequenceBatch.from_strings(["1 0 1"], V2)  # |y*| = max_len: its n-gram replacements visit every prefix


def small_policy(max_len=MAX_LEN, hidden=16):
    return make_policy("lstm", V2, max_len, hidden_size=hidden, num_layers=1, dropout=0.0)


def repeat(ref: SequenceBatch, n: int) -> SequenceBatch:
    return SequenceBatch(ref.tokens.expand(n, -1), ref.lengths.expand(n))


def exact_critic(table: exact.SoftQTable) -> TabularCritic:
    """A frozen TabularCritic holding Q_R (its -inf entries are masked by the critic anyway)."""
    critic = TabularCritic(V2, table.max_len)
    with torch.no_grad():
        for k, q in enumerate(table.q):
            critic.table[k].copy_(torch.where(torch.isfinite(q), q, torch.zeros_like(q)).float())
    critic.requires_grad_(False)
    return critic


def test_phase1_target_and_loss_hand_computed():
    # τ = 0.5, one row y = (0, 2) with 2 the last token (EOS position), ΔR = (1, 0.5), V = 3 ids.
    # Q̂_0 = r_0 + τ log Σ_w e^{Q(y_≤0, w)/τ} = 1 + 0.5·log(e^1 + e^-1 + e^0) = 1 + 0.5·1.4076060 = 1.7038030
    # Q̂_1 = r_1 = 0.5 (no future after EOS). Q(y_<0, 0) = 0.2, Q(y_<1, 2) = 0.0.
    # loss = (0.2 − 1.7038030)² + (0 − 0.5)² = 2.2614234 + 0.25 = 2.5114234
    # ∂loss/∂Q(y_≤0, 0) through the target: 2·(Q̂_0 − Q_0)·softmax(Q(y_≤0,·)/τ)_0 = 2·1.5038030·0.6652410 = 2.0007827
    q_t = torch.tensor([[[0.2, 0.0, -math.inf], [0.5, -0.5, 0.0]]], requires_grad=True)
    tokens, mask_t = torch.tensor([[0, 2]]), torch.tensor([[True, True]])
    delta_r_t = torch.tensor([[1.0, 0.5]])
    target_t = soft_q_targets(q_t, delta_r_t, mask_t, 0.5)
    torch.testing.assert_close(target_t, torch.tensor([[1.7038030, 0.5]]))
    loss = soft_q_loss(q_t, tokens, delta_r_t, mask_t, 0.5)
    assert float(loss.detach()) == pytest.approx(2.5114234, abs=1e-6)
    loss.backward()
    assert q_t.grad is not None
    assert float(q_t.grad[0, 1, 0]) == pytest.approx(2.0007827, abs=1e-5)  # residual gradient: through V too
    q_t.grad = None
    soft_q_loss(q_t, tokens, delta_r_t, mask_t, 0.5, residual_gradient=False).backward()
    assert float(q_t.grad[0, 1, 0]) == 0.0  # semi-gradient: the target is a constant
    # Padding: a third position beyond the length changes nothing.
    padded = torch.cat([q_t.detach(), torch.zeros(1, 1, 3)], 1)
    loss_pad = soft_q_loss(padded, torch.tensor([[0, 2, 0]]), torch.tensor([[1.0, 0.5, 7.0]]),
                           torch.tensor([[True, True, False]]), 0.5)
    assert float(loss_pad) == pytest.approx(2.5114234, abs=1e-6)


def test_phase2_kappa_mixing_hand_computed():
    # One reference, M = 2 samples of one token each; τ = 1; V = 3 with id 2 forbidden by the policy.
    # Sample 0: y = 0, π = (0.25, 0.75, 0), P_Q = softmax(log 0.8, log 0.2, 5 → dropped) = (0.8, 0.2, 0):
    #   CE = 0.8·log 4 + 0.2·log(4/3) = 1.1665719, NLL = log 4 = 1.3862944.
    # Sample 1: y = 1, π = P_Q = (0.5, 0.5, 0): CE = NLL = log 2 = 0.6931472.
    # R = (1, 0) → w = softmax(R/τ) = (e/(e+1), 1/(e+1)) = (0.7310586, 0.2689414).
    # Expected J_κ, κ = 0.2: J_0 = 0.2·1.1665719 + 0.8·1.3862944 = 1.3423499 → loss = 0.7310586·1.3423499 +
    #   0.2689414·0.6931472 = 1.1677524. Drawn z = (1, 0): loss = 0.7310586·1.1665719 + 0.2689414·0.6931472 = 1.0392484.
    log_p_t = torch.log(torch.tensor([[[0.25, 0.75, 0.0]], [[0.5, 0.5, 0.0]]]))
    q_t = torch.tensor([[[math.log(0.8), math.log(0.2), 5.0]], [[0.0, 0.0, 5.0]]])
    tokens, mask_t = torch.tensor([[0], [1]]), torch.tensor([[True], [True]])
    weights = vaml_weights(torch.tensor([[1.0, 0.0]]), 1.0)
    torch.testing.assert_close(weights, torch.tensor([[0.7310586, 0.2689414]]))
    assert float(vaml_loss(log_p_t, q_t, tokens, mask_t, weights, 1.0, 0.2)) == pytest.approx(1.1677524, abs=1e-6)
    z_t = torch.tensor([[1.0], [0.0]])
    assert float(vaml_loss(log_p_t, q_t, tokens, mask_t, weights, 1.0, z_t)) == pytest.approx(1.0392484, abs=1e-6)


def test_kappa_draws_and_rollout_weights():
    torch.manual_seed(0)
    policy = small_policy()
    critic = TabularCritic(V2, MAX_LEN)
    algo = make_algorithm("vaml", policy, reward=make_reward("hamming", V2), critic=critic, kappa=0.3, q_steps=0)
    rollout = algo.collect(repeat(REF, 400))
    assert rollout.phase == "policy" and rollout.samples.batch_size == 400 * 5
    assert isinstance(rollout.z_t, torch.Tensor)
    assert float(rollout.z_t.mean()) == pytest.approx(0.3, abs=0.01)
    # y* first in every group of M; weights are softmax(R/τ) over the group.
    assert torch.equal(rollout.samples.tokens.view(400, 5, -1)[:, 0], repeat(REF, 400).tokens)
    R = compute_reward(algo.reward, rollout.samples, rollout.references).view(400, 5)
    torch.testing.assert_close(rollout.weights, torch.softmax(R / 0.4, -1))


def test_soft_q_learning_on_the_whole_space_converges_to_q_r():
    # Phase 1 (VAML's own rollout and loss, the critic's own Adam group) on every sequence of the space: every
    # (prefix, token) pair is visited, so the only zero of the Bellman residual is Q_R; checked on all of them.
    torch.manual_seed(0)
    tau = 0.7
    reward = make_reward("hamming", V2)
    critic = TabularCritic(V2, MAX_LEN)
    algo = VAML(small_policy(), VAML.Config(reward="hamming", tau=tau, q_steps=10**6, critic_lr=0.1),
                reward=reward, critic=critic)
    space = exact.enumerate_sequences(V2, MAX_LEN)
    rollout = algo.make_rollout(space, repeat(REF, space.batch_size), space.batch_size, phase="q")
    group = algo.optimizer_groups()["critic"]
    optimizer = torch.optim.Adam(group.params, lr=algo.config.critic_lr)
    for _ in range(400):
        optimizer.zero_grad()
        loss, _ = algo.loss(rollout)
        loss.backward()
        optimizer.step()
    target = exact.soft_q_values(reward, V2, MAX_LEN, tau, reference=REF)
    errors = [(learned - exact_q.float()).abs()[torch.isfinite(exact_q)].max()
              for learned, exact_q in zip(critic.masked_tables(), target.q, strict=True)]
    assert float(loss.detach()) < 1e-4 and max(float(e) for e in errors) < 0.05, (float(loss.detach()), errors)


def test_phase1_through_fit_on_ngram_replacements_solves_the_visited_bellman_equations():
    # Alg. 1 as the algorithm runs it (fit, y* plus n-gram replacements). The samples all have |y*|'s length,
    # so they visit every prefix but take EOS only at the end: Q(s, eos) for |s| < 3 is never a visited pair,
    # and the Bellman equations of the visited pairs have many solutions. What they pin exactly is the pairs
    # whose look-ahead involves no unvisited entry: Q(s_3, eos) = 0 and Q(s_2, w) = ΔR + V(s_2 w) = ΔR
    # (|s_k| = k); there Q_φ must reach Q_R, and the residual must vanish on every visited pair.
    torch.manual_seed(0)
    tau = 0.7
    reward = make_reward("hamming", V2)
    critic = TabularCritic(V2, MAX_LEN)
    algo = make_algorithm("vaml", small_policy(), reward=reward, critic=critic, tau=tau, q_steps=10**6,
                          critic_lr=0.1, batch_size=8)
    fit(algo, repeat(REF, 8), config=FitConfig(max_steps=400, **FAST))
    target = exact.soft_q_values(reward, V2, MAX_LEN, tau, reference=REF).q
    learned = critic.masked_tables()
    symbols = torch.tensor(V2.symbol_ids)
    assert float((learned[2][:, symbols] - target[2][:, symbols].float()).abs().max()) < 0.05
    assert float((learned[3][:, V2.eos] - target[3][:, V2.eos].float()).abs().max()) < 0.05
    space = exact.enumerate_sequences(V2, MAX_LEN)
    full = space.lengths == MAX_LEN  # the 8 sequences the n-gram replacements of y* can produce
    visited = SequenceBatch(space.tokens[full], space.lengths[full])
    rollout = algo.make_rollout(visited, repeat(REF, visited.batch_size), visited.batch_size, phase="q")
    assert float(algo.loss(rollout)[0].detach()) < 1e-4


def test_phase2_with_exact_q_drives_policy_to_exponentiated_payoff():
    # κ = 1 (the pure token-level target) and the exact Q_R as critic, so no phase 1; y* has max_len − 1
    # symbols, so y* and its n-gram replacements (max_ngram = 4 ≥ 3) visit every prefix of the space, and at
    # each the optimum is P_{Q_R}(·|prefix): π → softmax(R/τ) over all 15 sequences (every length).
    torch.manual_seed(0)
    tau = 1.0
    reward = make_reward("hamming", V2)
    table = exact.soft_q_values(reward, V2, MAX_LEN, tau, reference=REF)
    space = exact.enumerate_sequences(V2, MAX_LEN)
    target = torch.softmax(compute_reward(reward, space, repeat(REF, space.batch_size)).double() / tau, 0)
    policy = small_policy()
    algo = make_algorithm("vaml", policy, reward=reward, critic=exact_critic(table), tau=tau, kappa=1.0, q_steps=0,
                          batch_size=16, lr=1e-2)
    kl_before = exact.kl(target, exact.policy_distribution(policy, space))
    fit(algo, repeat(REF, 16), config=FitConfig(max_epochs=200, **FAST))
    kl_after = exact.kl(target, exact.policy_distribution(policy, space))
    # every torch seed s → s + 1000k (k = 0-4) × 1 and 2 threads: after 0.00005-0.00016, before 1.10-1.43.
    assert kl_before > 0.5 and kl_after < 0.02, (kl_before, kl_after)


def test_phases_train_the_critic_then_the_policy():
    torch.manual_seed(0)
    policy = small_policy()
    algo = make_algorithm("vaml", policy, reward="hamming", q_steps=2, batch_size=4)  # default NetworkCritic
    assert "critic" in dict(algo.named_children())

    def snapshot(module):
        return [p.detach().clone() for p in module.parameters()]

    pol0, crit0 = snapshot(algo.policy), snapshot(algo.critic)
    fit(algo, repeat(REF, 4), config=FitConfig(max_steps=2, **FAST))
    pol1, crit1 = snapshot(algo.policy), snapshot(algo.critic)
    assert all(torch.equal(a, b) for a, b in zip(pol0, pol1))
    assert not all(torch.equal(a, b) for a, b in zip(crit0, crit1))
    assert algo.phase == "policy"
    fit(algo, repeat(REF, 4), config=FitConfig(max_steps=2, **FAST))
    assert all(torch.equal(a, b) for a, b in zip(crit1, snapshot(algo.critic)))
    assert not all(torch.equal(a, b) for a, b in zip(pol1, snapshot(algo.policy)))


def test_config_defaults_and_the_offered_budget():
    c = VAML.Config()
    assert (c.tau, c.kappa, c.num_samples, c.q_num_samples, c.critic_lr, c.critic_clip_grad_norm) == \
        (0.4, 0.2, 5, 5, 1e-3, 5.0)  # Table 5 (MT), App. B.4
    assert make_algorithm("vaml", small_policy(), Offer(steps=100), reward="hamming").config.q_steps == 50
    assert make_algorithm("vaml", small_policy(), reward="hamming").config.q_steps == 1000  # no budget offered
    groups = make_algorithm("vaml", small_policy(), reward="hamming").optimizer_groups()
    assert groups["critic"].optimizer.param_groups[0]["lr"] == 1e-3 and groups["critic"].clip == 5.0
    with pytest.raises(ValueError, match="q_steps=0"):
        make_algorithm("vaml", small_policy(), reward="hamming", critic=exact_critic(
            exact.soft_q_values(make_reward("hamming", V2), V2, MAX_LEN, 0.4, reference=REF)))


def test_early_stopping_counts_from_phase_2():
    """Phase 1 freezes the policy: its evaluations (scored 0.0 here, better than any later one) neither use up
    the patience nor become the restored checkpoint; ranking starts with phase 2's first evaluation."""
    from seqrl.training import Callback

    torch.manual_seed(0)
    q = 3
    policy = small_policy()
    algo = make_algorithm("vaml", policy, reward="hamming", q_steps=q, batch_size=4)
    phase2 = {q + 1: 3.0, q + 2: 2.0, q + 3: 2.5, q + 4: 2.6}

    def evaluate(alg):
        return {"valid_ce": 0.0 if alg.steps <= q else phase2[alg.steps]}

    kept = {}

    class Snapshot(Callback):
        def on_evaluation(self, algorithm, state):
            kept[state.step] = [p.detach().clone() for p in algorithm.policy.parameters()]

    result = fit(algo, repeat(REF, 4), evaluate=evaluate, callbacks=[Snapshot()],
                 config=FitConfig(max_steps=50, eval_every=1, patience=2, keep="best", monitor="valid_ce", **FAST))
    assert result.steps == q + 4 and result.best_step == q + 2 and result.best == 2.0
    assert [h["valid_ce"] for h in result.history[:q]] == [0.0] * q  # evaluated and recorded, not ranked
    assert all(torch.equal(a, b) for a, b in zip(kept[q + 2], policy.parameters()))  # phase 2's best restored
    assert not all(torch.equal(a, b) for a, b in zip(kept[q], policy.parameters()))


def test_from_scratch_with_patience_one_reaches_phase_2():
    """With the real validation CE (constant through phase 1), patience = 1 used to end the run at step 2."""
    torch.manual_seed(0)
    algo = make_algorithm("vaml", small_policy(), reward="hamming", q_steps=4, batch_size=3)
    data = SequenceBatch.from_strings(["1 0 1", "0 1", "1 1"], V2)
    result = fit(algo, data, valid=data, config=FitConfig(max_steps=12, eval_every=1, patience=1, monitor="valid_ce",
                                                          **FAST))
    assert result.steps >= 4 + 2 and result.best_step > 4


def test_resume_across_the_phase_switch_is_bit_identical(tmp_path):
    """Interrupted in phase 1, resumed past the switch to phase 2: policy, critic, history and best step equal the
    uninterrupted run's (data order, κ draws, n-gram replacements, both Adams, the step count)."""
    import os
    import signal

    from seqrl.training import Callback, TrainingInterrupted

    class InterruptAt(Callback):
        def on_step_end(self, algorithm, state):
            if state.step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    data = SequenceBatch.from_strings(["1 0 1", "0 1", "1 1", "0", "1 0"], V2)

    def new():
        torch.manual_seed(3)
        return make_algorithm("vaml", small_policy(hidden=8), reward="hamming", q_steps=4, batch_size=2, lr=1e-2)

    config = FitConfig(max_steps=9, eval_every=2, patience=20, seed=5,
                       state_path=str(tmp_path / "state.pt"), **FAST)
    whole = new()
    expected = fit(whole, data, valid=data, config=config)
    assert expected.steps == 9 and whole.phase == "policy"
    (tmp_path / "state.pt").unlink()
    part = new()
    with pytest.raises(TrainingInterrupted, match="interrupted at step 2"):
        fit(part, data, valid=data, config=config, callbacks=[InterruptAt()])
    assert part.phase == "q"
    resumed = new()
    result = fit(resumed, data, valid=data, config=config, resume_from=tmp_path / "state.pt")
    assert result.history == expected.history and result.best_step == expected.best_step
    assert resumed.steps == whole.steps == 9
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
