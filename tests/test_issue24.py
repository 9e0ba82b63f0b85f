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
    alg = make_algorithm("distill", policy, potential=P, proposal=r, proposal_budget=600, num_samples=5)
    data = alg.setup(None)
    assert alg.summary()["episodes"] == 600
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


# --- ERAC / VAML options: each paper-or-code setting, and the critic's own phase ---------------------------------
def test_variance_penalty_variance_reduction_is_the_sum_over_n_minus_1():
    from seqrl.critics import variance_penalty

    q_t = torch.tensor([[[1.0, 3.0, 5.0, -torch.inf]]])  # 3 allowed ids: mean 3, Σ (q − 3)² = 8
    mask_t = torch.tensor([[True]])
    assert variance_penalty(q_t, mask_t, 0.5).tolist() == [4.0]
    assert variance_penalty(q_t, mask_t, 0.5, "variance").tolist() == [2.0]  # 0.5 · 8 / (3 − 1)
    q = q_t[0, 0, :3]
    assert float(variance_penalty(q_t, mask_t, 1.0, "variance")) == pytest.approx(float(q.var()))  # torch's var


@pytest.fixture(scope="module")
def tiny_pairs():
    from seqrl.envs.variant import VariantTranslationTask

    task = VariantTranslationTask(train_size=16, valid_size=6, test_size=4, seed=0)
    return task, task.split("train"), task.split("valid")


def _policy(task, seed=0):
    torch.manual_seed(seed)
    return make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab, hidden_size=8,
                       embedding_dim=8, dropout=0.0)


def test_erac_defaults_follow_the_authors_code_and_the_options_act(tiny_pairs):
    from seqrl.algorithms.erac import ERAC

    cfg = ERAC.Config()
    assert (cfg.smoothing, cfg.joint_beta1, cfg.critic_pretrain_beta1, cfg.actor_entropy) == (
        "variance", 0.0, 0.9, "exact")
    task, train, valid = tiny_pairs
    alg = make_algorithm("erac", _policy(task), reward="bleu_scaled", valid=valid, batch_size=8,
                         critic_pretrain_steps=1, lr_decay_metric=None)
    batch = train.index(torch.arange(8))
    alg.update(batch)  # critic pretraining
    assert alg.optimizer_groups()["critic"].optimizer.param_groups[0]["betas"][0] == 0.9
    alg.update(batch)  # joint training
    for group in ("policy", "critic"):
        assert alg.optimizer_groups()[group].optimizer.param_groups[0]["betas"][0] == 0.0
    # the normalized entropy term is the exact one divided by ‖log π‖₂ (here with Q = 0 and no MLE term)
    rollout = alg.collect(batch)
    log_pi_t = alg.policy.log_dists(rollout.samples)
    zero_q = torch.zeros_like(log_pi_t)
    losses = {}
    for mode in ("exact", "normalized"):
        other = make_algorithm("erac", alg.policy, reward="bleu_scaled", valid=valid, tau=0.5, lambda_mle=0.0,
                               actor_entropy=mode, lr_decay_metric=None)
        losses[mode] = float(other.actor_loss(rollout, log_pi_t, zero_q).detach())
    assert losses["exact"] < 0 and losses["exact"] < losses["normalized"] < 0


def test_erac_critic_only_trains_the_critic_alone_and_ranks_it(tiny_pairs):
    task, train, valid = tiny_pairs
    policy = _policy(task)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    alg = make_algorithm("erac", policy, reward="bleu_scaled", valid=valid, batch_size=8, critic_only=True)
    critic_before = [p.detach().clone() for p in alg.critic.parameters()]
    state = torch.random.get_rng_state()
    first = alg.critic_valid_loss(valid)
    assert torch.equal(state, torch.random.get_rng_state())  # the validation draw leaves the training stream alone
    assert first == alg.critic_valid_loss(valid)  # and is the same draw every time
    for _ in range(3):
        alg.update(train.index(torch.arange(8)))
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, alg.critic.parameters()))
    assert alg.monitor_ready() and alg.pretraining_critic


def test_vaml_weights_from_their_own_reward_and_temperature(tiny_pairs):
    from seqrl.algorithms.vaml import VAML
    from seqrl.rewards import compute_reward, make_reward

    assert VAML.requires.from_scratch  # Alg. 2 / train_vaml.py: a new actor
    task, train, valid = tiny_pairs
    alg = make_algorithm("vaml", _policy(task), reward="bleu_scaled", weight_reward="bleu", weight_tau=1.0,
                         q_steps=0, num_samples=3, batch_size=4)
    rollout = alg.collect(train.index(torch.arange(4)))
    bleu = compute_reward(make_reward("bleu", task.vocab), rollout.samples.with_context(None), rollout.references)
    assert torch.allclose(rollout.weights, torch.softmax(bleu.view(4, 3).double(), -1).float())
    q_only = make_algorithm("vaml", _policy(task), reward="bleu_scaled", critic_only=True, q_steps=0, batch_size=4)
    assert q_only.phase == "q" and q_only.monitor_ready()
    assert q_only.critic_valid_loss(valid) > 0


def test_mixer_fine_tuning_spreads_ranzatos_schedule_over_the_budget(tiny_pairs):
    from seqrl.algorithms import Offer

    task, train, valid = tiny_pairs
    longest = int(train.lengths.max())
    offer = Offer(train=train, valid=valid, reward="bleu", epochs=10)
    alg = make_algorithm("mixer", _policy(task), offer, batch_size=4)  # 4 steps an epoch: a budget of 40
    stages = -(-longest // 2) + 1
    assert alg.m == longest and alg.config.anneal_every == 40 // stages
    scratch = make_algorithm("mixer", _policy(task), Offer(train=train, epochs=10, from_scratch=True), batch_size=4)
    assert scratch.config.anneal_every == 4 and scratch.m == task.max_len  # per epoch, from max_len


# --- the presets ------------------------------------------------------------------------------------------------
def test_presets_set_their_rows_and_protocol_beneath_the_users_settings():
    from seqrl.bench.seq2seq import PRESETS, Seq2SeqSuite
    from seqrl.bench.suite import BenchOptions

    suite = Seq2SeqSuite()
    st = suite.settings_for(BenchOptions(settings={"preset": "critics-table1", "mle_epochs": 7}))
    assert (st.task, st.protocol, st.reward, st.critic_phase, st.mle_epochs) == (
        "variant_translation", "scratch", "bleu_scaled", "own", 7)
    st = suite.settings_for(BenchOptions(settings={"preset": "erpo-table1"}, quick=True))
    assert st.mle_epochs == 3 and st.reward == "bleu" and st.scratch_monitor == "valid_bleu"
    assert PRESETS["erpo-table1"].algos == ("mle", "raml", "spg", "mixer", "scheduled_sampling", "interpolation")
    assert PRESETS["critics-table1"].algos == ("mle", "raml", "vaml", "ac", "erac")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        suite.settings_for(BenchOptions(settings={"preset": "nope"}))


def test_preset_cli_option(tmp_path, capsys):
    from seqrl.cli import main

    assert main(["bench", "seq2seq", "--preset", "critics-table1", "--set", "preset=erpo-table1",
                 "--out", str(tmp_path)]) == 2
    assert "give the preset once" in capsys.readouterr().err
    assert main(["bench", "gam", "--preset", "erpo-table1", "--out", str(tmp_path)]) == 2
    assert "--preset does not apply to suite 'gam'" in capsys.readouterr().err


def test_critics_preset_runs_critic_phases_outside_the_budget_beside_the_control():
    """One seed of ``--preset critics-table1`` at toy size: the critics train as phases of their own, every row
    then gets its budget, and ``mle_continued`` fine-tunes the MLE policy with the fine-tuning budget."""
    from seqrl.bench.seq2seq import Seq2SeqSuite
    from seqrl.bench.suite import BenchOptions

    sets = {"preset": "critics-table1", "train_size": 8, "valid_size": 4, "test_size": 2, "hidden_size": 8,
            "embedding_dim": 8, "batch_size": 4, "mle_epochs": 1, "finetune_epochs": 1, "critic_epochs": 2,
            "critic_patience": 10}
    options = BenchOptions(seeds=(0,), progress=False, settings=sets)
    suite = Seq2SeqSuite()
    records = {r.algorithm: r for r in suite.run_job(suite.jobs(options)[0], options)}
    assert list(records) == ["mle", "raml", "vaml", "ac", "erac", "erac[no future entropy]", "mle_continued"]
    for name in records:
        assert records[name].metrics["steps"] == 2  # one epoch of 8 pairs at batch 4: the same budget
    for name in ("vaml", "ac", "erac", "erac[no future entropy]"):
        assert records[name].metrics["critic_steps"] == 4  # its own phase: critic_epochs × 2 steps, outside the budget
    assert "critic_steps" not in records["raml"].metrics
    assert records["mle"].params["preset"] == "critics-table1"


def test_ablation_betas_set_table_3s_grid_from_the_cli(tmp_path):
    from seqrl.bench.seq2seq import Seq2SeqSuite, _Job
    from seqrl.bench.suite import BenchOptions
    from seqrl.cli import build_parser
    from seqrl.cli.bench import _settings

    args = build_parser().parse_args(["bench", "seq2seq", "--ablation", "--preset", "critics-table1", "--set",
                                      "ablation_betas=[0.1, 1]", "--out", str(tmp_path)])
    sets = _settings(args, Seq2SeqSuite())
    assert sets["ablation_betas"] == (0.1, 1.0)
    options = BenchOptions(settings={**sets, "train_size": 4, "valid_size": 2, "test_size": 2})
    labels = [label for label, _, _ in _Job(Seq2SeqSuite(), {"seed": 0, "data": None}, options).rows()]
    assert labels == ["mle", "ac", "erac[beta=0.1,lambda_var=0]", "erac[beta=0.1,lambda_var=0.001]",
                      "erac[beta=1,lambda_var=0]", "erac[beta=1,lambda_var=0.001]", "erac[no future entropy]"]


def test_table1_reports_intervals_over_the_configurations():
    from seqrl.bench.gam_report import table1
    from seqrl.bench.records import RunRecord

    records = []
    for seed, (dpg, dis) in enumerate([(15.0, 16.0), (15.5, 16.0), (14.0, 15.0)]):
        params = {"motif": "101", "features": "1001111", "dataset_size": 500}
        base = {"ce_r": 20.0, "h_true": 14.0, "motif_freq": 0.5, "motif_freq_r": 0.01, "ce_plambda": 14.5}
        records += [RunRecord("dpg_off", seed, params, {**base, "ce_test": dpg}),
                    RunRecord("distill", seed, params, {**base, "ce_test": dis})]
    text = table1(records)
    assert "95% CI" in text and "] t / [" in text and "boot" in text
    row = text.splitlines()[2].split()
    assert row[:2] == ["500", "3"] and float(row[2]) == pytest.approx((15 / 16 + 15.5 / 16 + 14 / 15) / 3, rel=1e-3)
