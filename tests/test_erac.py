"""ERAC and AC ([VAML/ERAC] Sec. 4.2, Alg. 3) against exact soft values on an enumerable space."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import AC, ERAC, Offer, make_algorithm, soft_td_target
from seqrl.critics import NetworkCritic, TabularCritic
from seqrl.policies import make_policy
from seqrl.rewards.base import compute_reward, make_reward
from seqrl.types import SequenceBatch, Vocab

L = 4  # max_len: 2 symbols + EOS → 15 sequences, 15 prefixes


def _setup(vocab, name="erac", **config):
    policy = make_policy("lstm", vocab, L, hidden_size=8, num_layers=1, dropout=0.0)
    critic = TabularCritic(vocab, L)
    reward = make_reward("hamming", vocab)
    algo = make_algorithm(name, policy, reward=reward, critic=critic, lr_decay_metric=None, **config)
    ref = SequenceBatch.from_strings(["1 0"], vocab)
    return algo, policy, critic, reward, ref


def _max_error(critic, table):
    """max |Q_φ − Q^π| over the allowed (finite) entries of every level."""
    return max(float((mine.double() - q)[torch.isfinite(q)].abs().max())
               for mine, q in zip(critic.masked_tables(), table.q, strict=True))


@pytest.mark.parametrize("name, tau", [("erac", 0.5), ("ac", 0.0)])
def test_critic_of_a_fixed_actor_converges_to_the_exact_soft_q(binary_vocab, name, tau):
    # Critic pretraining (App. B.3): the actor stays fixed, the critic minimises Alg. 3's TD loss on y ~ π.
    # Its fixed point is Eq. 9's soft Q^π: Q^π(s, w) = r(s, w) + Σ_w' π(w'|s') [Q^π(s', w') − τ log π(w'|s')],
    # i.e. r + τ H(π(·|s')) + Σ π Q^π (Eq. 19), which exact.soft_q_values(policy=…) computes by backward DP
    # (τ = 0: AC's plain Q^π). β = 1 (no target net) and λ_var = 0, so that the fixed point is exactly Q^π.
    config = {"tau": tau} if name == "erac" else {}
    algo, policy, critic, reward, ref = _setup(binary_vocab, name, beta=1.0, lambda_var=0.0,
                                               critic_pretrain_steps=10**9, **config)
    assert algo.config.tau == tau
    before = [p.detach().clone() for p in policy.parameters()]
    opt = torch.optim.SGD(critic.parameters(), lr=1.0)
    data = ref.repeat_interleave(128)
    # The error falls geometrically, at a rate set by how often π visits its rarest (prefix, token) pair. Over 24
    # torch seeds (0-19 and 1000-4000: the actor's init and the samples; 1 and 2 threads agree to 1e-6; erac and
    # ac alike), max error after 100 steps: 0.00004-0.119 (5 of 38 runs above 0.05); after 200: at most 0.0064
    # (mean 0.0006); after 50 steps it is still up to 0.50.
    for _ in range(200):
        loss, _ = algo.loss(algo.collect(data))
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in policy.parameters())  # actor fixed while the critic pretrains
        opt.step()
        algo.target.update()
    table = exact.soft_q_values(reward, binary_vocab, L, tau, reference=ref, policy=policy)
    assert _max_error(critic, table) < 0.05
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    if tau > 0:  # the entropy matters: the plain Q^π is far from what the ERAC critic learned
        assert _max_error(critic, exact.soft_q_values(reward, binary_vocab, L, 0.0, reference=ref,
                                                      policy=policy)) > 0.3


def _soft_return(policy, reward, vocab, ref, tau):
    """E_π[R] + τ H(π), exactly by enumeration."""
    space = exact.enumerate_sequences(vocab, L)
    probs = exact.policy_distribution(policy, space)
    R = compute_reward(reward, space, ref.repeat_interleave(space.batch_size)).double()
    return float(exact.expectation(probs, R)) + tau * exact.entropy(probs)


def test_actor_step_with_the_exact_critic_increases_the_soft_return(binary_vocab):
    tau = 0.5
    algo, policy, critic, reward, ref = _setup(binary_vocab, tau=tau, beta=1.0, lambda_var=0.0, lambda_mle=0.0)
    table = exact.soft_q_values(reward, binary_vocab, L, tau, reference=ref, policy=policy)
    with torch.no_grad():  # the critic is the exact soft Q^π of the current actor
        for k, q in enumerate(table.q):
            critic.table[k].copy_(torch.where(torch.isfinite(q), q, torch.zeros_like(q)).float())
    before = _soft_return(policy, reward, binary_vocab, ref, tau)
    assert before == pytest.approx(float(table.v[0][0]), abs=1e-5)  # V^π(∅) = E_π R + τ H(π)
    opt = torch.optim.SGD(policy.parameters(), lr=0.05)
    loss, stats = algo.loss(algo.collect(ref.repeat_interleave(256)))
    assert "actor_loss" in stats
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = _soft_return(policy, reward, binary_vocab, ref, tau)
    # Torch seeds 0-19 (the actor's init and the 256 samples) × 1 and 2 threads: gain 0.0007-0.014 (mean 0.006,
    # s.d. 0.004), the same with 1024 samples: the init spreads it, not the sampling. A small step along the exact
    # soft policy gradient cannot lower the return; the smallest gain measured is 7× the 1e-4 asked.
    assert after > before + 1e-4


def test_ac_equals_erac_at_tau_zero(binary_vocab):
    torch.manual_seed(1)
    policy = make_policy("lstm", binary_vocab, L, hidden_size=8, num_layers=1, dropout=0.0)
    critic = TabularCritic(binary_vocab, L)
    with torch.no_grad():
        for t in critic.table:
            t.normal_()
    reward = make_reward("hamming", binary_vocab)
    ac = make_algorithm("ac", policy, reward=reward, critic=critic, lr_decay_metric=None)
    erac = make_algorithm("erac", policy, reward=reward, critic=critic, tau=0.0, lr_decay_metric=None)
    assert isinstance(ac, AC) and isinstance(ac, ERAC) and ac.config.tau == 0.0 and ERAC.Config().tau > 0
    assert {k: v for k, v in vars(ac.config).items()} == {k: v for k, v in vars(erac.config).items()}
    rollout = ac.collect(SequenceBatch.from_strings(["1 0", "0"], binary_vocab).repeat_interleave(4))
    grads = []
    for algo in (ac, erac):
        policy.zero_grad()
        critic.zero_grad()
        loss, stats = algo.loss(rollout)
        loss.backward()
        grads.append([p.grad.clone() for p in [*policy.parameters(), *critic.parameters()]])
        grads[-1].append(loss.detach())
    assert all(torch.allclose(a, b) for a, b in zip(*grads, strict=True))


def test_soft_td_target_hand_computed():
    inf = math.inf
    # One row y = (a, eos), V = 3 with id 0 masked; row 0: after ∅, row 1: after "a".
    # π(·|a) = (·, 0.5, 0.5), Q̄(a, ·) = (·, 2, 4): Σ π Q̄ = 3; H = ln 2; τ = 0.1.
    # Q̂_0 = r_0 + τ ln 2 + 3 = 1 + 0.0693147… + 3 = 4.0693147…;  Q̂_1 = r_1 = −1 (nothing follows EOS).
    log_pi_t = torch.tensor([[[-inf, math.log(0.3), math.log(0.7)], [-inf, math.log(0.5), math.log(0.5)]]])
    q_bar_t = torch.tensor([[[-inf, 9.0, 9.0], [-inf, 2.0, 4.0]]])
    reward_t = torch.tensor([[1.0, -1.0]])
    q_hat = soft_td_target(reward_t, log_pi_t, q_bar_t, torch.tensor([2]), tau=0.1)
    assert q_hat[0].tolist() == pytest.approx([4.0 + 0.1 * math.log(2), -1.0])
    # A length-1 row (y = eos): no future at all, whatever the next row holds.
    assert soft_td_target(reward_t, log_pi_t, q_bar_t, torch.tensor([1]), tau=0.1).tolist() == [[1.0, -1.0]]


def test_future_entropy_switch_keeps_tau_in_the_actor_only(binary_vocab):
    policy = make_policy("lstm", binary_vocab, L, hidden_size=8, num_layers=1, dropout=0.0)
    critic = TabularCritic(binary_vocab, L, init=0.3)
    reward = make_reward("hamming", binary_vocab)
    batch = SequenceBatch.from_strings(["1 0"], binary_vocab).repeat_interleave(8)
    plain = make_algorithm("erac", policy, reward=reward, critic=critic, tau=0.5, future_entropy=False,
                           lr_decay_metric=None)
    ac = make_algorithm("ac", policy, reward=reward, critic=critic, lr_decay_metric=None)
    erac = make_algorithm("erac", policy, reward=reward, critic=critic, tau=0.5, lr_decay_metric=None)
    rollout = plain.collect(batch)
    log_pi_t, q_t = policy.log_dists(rollout.samples), critic(rollout.samples)
    c_plain, _ = plain.critic_loss(rollout, log_pi_t, q_t)
    c_ac, _ = ac.critic_loss(rollout, log_pi_t, q_t)
    c_erac, _ = erac.critic_loss(rollout, log_pi_t, q_t)
    c_plain, c_ac, c_erac = float(c_plain.detach()), float(c_ac.detach()), float(c_erac.detach())
    assert c_plain == pytest.approx(c_ac) and c_plain != pytest.approx(c_erac)
    a_plain, a_erac = plain.actor_loss(rollout, log_pi_t, q_t), erac.actor_loss(rollout, log_pi_t, q_t)
    assert float(a_plain.detach()) == pytest.approx(float(a_erac.detach()))


def test_phases_optimizers_and_fit(binary_vocab):
    from seqrl.training import FitConfig, fit

    policy = make_policy("lstm", binary_vocab, L, hidden_size=8, num_layers=1, dropout=0.0)
    with pytest.raises(ValueError, match="decays its lr on valid_reward: pass valid=<validation batch>"):
        make_algorithm("erac", policy, reward="hamming")  # the default lr decay watches validation
    algo = make_algorithm("erac", policy, reward="hamming", critic_pretrain_steps=2, lr_decay_metric=None,
                          batch_size=3)
    assert isinstance(algo.critic, NetworkCritic)  # default critic, a submodule: checkpoints and fit see it
    assert any(k.startswith("critic.") for k in algo.state_dict()) and any(k.startswith("target.") for k in
                                                                              algo.state_dict())
    groups = algo.optimizer_groups()
    assert set(groups) == {"policy", "critic"}
    assert groups["policy"].clip == groups["critic"].clip == 5.0  # App. B.4
    assert groups["policy"].optimizer.param_groups[0]["lr"] == 1e-4  # Table 6
    assert groups["critic"].optimizer.param_groups[0]["lr"] == 1e-3
    train = SequenceBatch.from_strings(["1 0", "0 1 1", "1"], binary_vocab)
    critic0 = [p.detach().clone() for p in algo.critic.parameters()]
    target0 = [p.detach().clone() for p in algo.target.parameters()]
    actor0 = [p.detach().clone() for p in policy.parameters()]
    fit(algo, train, config=FitConfig(max_steps=2, progress=False, eval_every=100))
    assert algo.steps == 2 and not algo.pretraining_critic
    assert all(torch.equal(a, b) for a, b in zip(actor0, policy.parameters()))  # actor fixed in phase 2
    assert not all(torch.equal(a, b) for a, b in zip(critic0, algo.critic.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(target0, algo.target.parameters()))  # Polyak moved φ̄
    loss, stats = algo.loss(algo.collect(train))
    assert "actor_loss" in stats and math.isfinite(float(loss.detach()))  # phase 3: both


def test_schedule_follows_what_the_run_offers_and_registration():
    """Critic pretraining for one epoch, at most a quarter of the budget (App. B.3 in an equal budget), and a
    validation check every epoch, from what the run offers; nothing derived without an offer."""
    vocab = Vocab(["0", "1"])
    train = SequenceBatch.from_strings(["1 0"] * 20, vocab)

    def built(name, offer):
        policy = make_policy("lstm", vocab, L, hidden_size=8, num_layers=1, dropout=0.0)
        return make_algorithm(name, policy, offer, reward="hamming", batch_size=2, lr_decay_metric=None).config

    config = built("erac", Offer(train=train, steps=100))
    assert (config.critic_pretrain_steps, config.check_every) == (10, 10)
    config = built("ac", Offer(train=train, steps=20))
    assert (config.critic_pretrain_steps, config.check_every) == (5, 10)
    assert built("erac", Offer()).critic_pretrain_steps == ERAC.Config().critic_pretrain_steps == 0
    assert ERAC.requires.reward and ERAC.name == "erac" and AC.name == "ac"


def test_bench_ablation_runs_tables_3_and_4_rows(tmp_path, capsys):
    """``seqrl bench seq2seq --ablation --quick``: mle and ac, ERAC at β ∈ {0.001, 1} × λ_var ∈ {0, 0.001}
    and ERAC without future entropy, each from the same pretrained policy, with the paired table vs mle."""
    from seqrl.cli import main

    code = main(["bench", "seq2seq", "--quick", "--ablation", "--seeds", "0", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path), "--set", "train_size=24", "--set", "valid_size=6", "--set", "test_size=4",
                 "--set", "mle_epochs=1", "--set", "finetune_epochs=1", "--set", "hidden_size=8",
                 "--set", "reward=hamming"])
    out = capsys.readouterr().out
    assert code == 0
    import json

    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["algorithm"] for r in runs] == [
        "mle_pretrained", "mle", "ac", "erac[beta=0.001,lambda_var=0]", "erac[beta=0.001,lambda_var=0.001]",
        "erac[beta=1,lambda_var=0]", "erac[beta=1,lambda_var=0.001]", "erac[no future entropy]"]
    assert "Paired by seed" in out and "erac[no future entropy]" in out
    assert main(["bench", "gam", "--ablation", "--out", str(tmp_path / "g")]) == 2
    assert "--ablation does not apply to suite 'gam'" in capsys.readouterr().err


class _RecordingAdam(torch.optim.Adam):
    """Adam that records the learning rate each of its steps actually used."""

    log: list = []

    def step(self, closure=None):
        _RecordingAdam.log.append((self.param_groups[0]["params"][0], self.param_groups[0]["lr"]))
        return super().step(closure)


def _lrs_used(algo):
    """[(actor lr, critic lr)] per optimizer step, from the recorded Adam steps."""
    actor0 = next(algo.policy.parameters())
    steps: list[dict[str, float]] = []
    for param, lr in _RecordingAdam.log:
        name = "policy" if param is actor0 else "critic"
        if not steps or name in steps[-1]:
            steps.append({})
        steps[-1][name] = lr
    return [(s["policy"], s["critic"]) for s in steps]


def test_table6_lr_schedule_and_decay_on_a_validation_plateau(binary_vocab, monkeypatch):
    """The rates the optimizers use: critic 1e-3 while it pretrains, then actor and critic 1e-4 (Table 6); each
    joint-training check worse than the best joint-training one halves the actor's (App. B.4), a tie does not.
    Checks while the critic pretrains (the actor fixed) count for no decay, and the loop's evaluations then count
    for no patience (scored 0.0 here, they would otherwise exhaust patience = 3 and trigger decays); the starting
    actor's evaluation counts for early stopping only (scored 0.7 here, above every later one)."""
    from seqrl.algorithms import erac as erac_module
    from seqrl.training import FitConfig, fit

    monkeypatch.setattr(torch.optim, "Adam", _RecordingAdam)
    monkeypatch.setattr(_RecordingAdam, "log", [])
    policy = make_policy("lstm", binary_vocab, L, hidden_size=8, num_layers=1, dropout=0.0)
    initial = [p.detach().clone() for p in policy.parameters()]
    train = SequenceBatch.from_strings(["1 0", "0 1 1", "1"], binary_vocab)
    algo = make_algorithm("erac", policy, reward="hamming", critic=TabularCritic(binary_vocab, L),
                          critic_pretrain_steps=3, valid=train, check_every=1, batch_size=3)
    assert algo.config.lr_decay == 0.5 and algo.config.joint_critic_lr == 1e-4
    scripted = {0: 0.7, 1: 0.0, 2: 0.0, 3: 0.0, 4: 0.6, 5: 0.4, 6: 0.6, 7: 0.3, 8: 0.6}  # by steps taken
    monkeypatch.setattr(erac_module, "reward_score", lambda reward, policy, data: scripted[algo.steps])
    result = fit(algo, train, evaluate=lambda alg: {"valid_reward": scripted[alg.steps]},
                 config=FitConfig(max_steps=20, eval_every=1, patience=4, evaluate_at_start=True, keep="best",
                                  progress=False))
    # early stopping ranks 0.7 @0 (best), then 0.6 @4, 0.4 @5, 0.6 @6, 0.3 @7: four without improvement
    assert result.steps == 7 and result.best_step == 0 and result.best == 0.7 and result.kept_step == 0
    assert all(torch.equal(a, b) for a, b in zip(initial, policy.parameters()))  # the start kept
    # the decay ranks 0.6 @4 (best), 0.4 @5 (worse: ½), 0.6 @6 (tie), 0.3 @7 (worse: ¼, after the last step)
    assert _lrs_used(algo) == [(1e-4, 1e-3)] * 3 + [(1e-4, 1e-4)] * 2 + [(5e-5, 1e-4)] * 2
    assert algo.actor_lr_scale == 0.25 and algo.decay_best == 0.6
    assert [h["lr_critic"] for h in result.history[1:]] == [1e-3] * 3 + [1e-4] * 4


def test_resume_across_the_critic_pretraining_switch_is_bit_identical(binary_vocab, tmp_path):
    """Interrupted while the critic pretrains, resumed past the switch to joint training and past lr decays:
    weights (actor, critic, target), history and the decay state equal the uninterrupted run's."""
    import os
    import signal

    from seqrl.training import Callback, FitConfig, TrainingInterrupted, fit

    class InterruptAt(Callback):
        def on_step_end(self, algorithm, state):
            if state.step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    train = SequenceBatch.from_strings(["1 0", "0 1 1", "1", "0 0", "1 1 0"], binary_vocab)

    def new():
        torch.manual_seed(3)
        policy = make_policy("lstm", binary_vocab, L, hidden_size=8, num_layers=1, dropout=0.0)
        return make_algorithm("erac", policy, reward="hamming", critic_pretrain_steps=3, beta=0.5, lr=0.05,
                              lr_decay_metric="valid_ce", valid=train, check_every=1, batch_size=2)

    config = FitConfig(max_steps=9, eval_every=1, seed=7, progress=False, device="cpu",
                       state_path=str(tmp_path / "state.pt"))
    whole = new()
    expected = fit(whole, train, valid=train, config=config)
    assert any(h["lr_policy"] < 0.05 for h in expected.history)  # the run decays: the test covers it
    (tmp_path / "state.pt").unlink()
    with pytest.raises(TrainingInterrupted, match="interrupted at step 2"):
        fit(new(), train, valid=train, config=config, callbacks=[InterruptAt()])
    resumed = new()
    result = fit(resumed, train, valid=train, config=config, resume_from=tmp_path / "state.pt")
    assert result.history == expected.history and result.best_step == expected.best_step
    assert resumed.actor_lr_scale == whole.actor_lr_scale and resumed.decay_best == whole.decay_best
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
