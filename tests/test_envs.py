"""Environments and tasks: check_env, the exact motif sampler, shared reward code, data readers."""

import math
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from seqrl.envs import (
    ENV_IDS,
    CopyTask,
    MotifError,
    MotifTask,
    ReverseTask,
    SequenceEnv,
    TextPairTask,
    ToyTranslationTask,
    count_with_motif,
    read_text_pairs,
    rollout,
    task_for_env,
)
from seqrl.policies import make_policy
from seqrl.rewards import compute_reward, make_reward
from seqrl.types import BatchError, SequenceBatch


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_registered_envs_pass_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["action_mask"].sum() == env.action_space.n


def test_entropy_of_motif_process_is_exact():
    assert count_with_motif("1000101000101", 30) == 2334480
    assert MotifTask("1000101000101", 30, train_size=1, test_size=1).entropy() == pytest.approx(math.log(2334480))


def test_motif_counts_match_brute_force():
    for motif, n in [("11", 5), ("101", 7), ("0110", 8)]:
        brute = sum(motif in format(i, f"0{n}b") for i in range(2**n))
        assert count_with_motif(motif, n) == brute


def test_motif_sampler_is_uniform_chi_square():
    motif, n = "101", 10
    task = MotifTask(motif, n, train_size=1, test_size=1)
    support = [format(i, f"0{n}b") for i in range(2**n) if motif in format(i, f"0{n}b")]
    draws = 60 * len(support)
    samples = task.sample(draws, torch.Generator().manual_seed(0))
    strings = ["".join(row.split()) for row in samples.to_strings(task.vocab)]
    assert set(strings) <= set(support)
    counts = Counter(strings)
    expected = draws / len(support)
    chi2 = sum((counts.get(s, 0) - expected) ** 2 / expected for s in support)
    dof = len(support) - 1
    # 99.9% quantile of χ²(dof) ≈ dof + 3.09·sqrt(2·dof) (normal approximation, dof ≈ 700).
    assert chi2 < dof + 3.09 * math.sqrt(2 * dof)
    # And a sampler that always returns the same string would fail: the test can fail.
    assert len(counts) > 0.95 * len(support)


def test_motif_splits_are_deterministic_per_seed():
    a = MotifTask(train_size=20, test_size=30, seed=1)
    b = MotifTask(train_size=40, test_size=30, seed=1)
    c = MotifTask(train_size=20, test_size=30, seed=2)
    assert torch.equal(a.split("test").tokens, b.split("test").tokens)  # |D| does not move T
    assert torch.equal(a.split("train").tokens, MotifTask(train_size=20, test_size=30, seed=1).split("train").tokens)
    assert not torch.equal(a.split("train").tokens, c.split("train").tokens)
    assert a.split("valid").batch_size == 100


def test_motif_bad_inputs():
    with pytest.raises(MotifError, match="binary string"):
        MotifTask("10a1")
    with pytest.raises(MotifError, match="shorter than the motif"):
        MotifTask("10101", length=3)
    with pytest.raises(MotifError, match="train_size"):
        MotifTask(train_size=0)


def test_env_dense_rewards_sum_to_batched_reward():
    task = CopyTask(num_symbols=3, max_length=4, train_size=10, valid_size=2, test_size=2)
    env = SequenceEnv(task, "hamming", dense=True)
    reward = make_reward("hamming", task.vocab)
    rng = np.random.default_rng(0)
    for episode in range(10):
        obs, info = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, info = env.step(int(rng.integers(task.vocab.eos, len(task.vocab))))
            total += r
            done = terminated or truncated
        hyp = SequenceBatch.from_lists([info["sequence"]])
        ref = task.split("train").index([info_index := env._index]).with_context(None)
        assert info_index >= 0
        assert total == pytest.approx(float(compute_reward(reward, hyp, ref)[0]))
        assert len(info["sequence"]) <= task.max_len and info["sequence"][-1] == task.vocab.eos


def test_env_sparse_truncation_forces_eos():
    task = MotifTask("11", 4, train_size=5, test_size=5)
    env = SequenceEnv(task, dense=False)
    env.reset(seed=0)
    one = task.vocab.stoi["1"]
    rewards, flags = [], []
    for _ in range(4):
        _, r, terminated, truncated, info = env.step(one)
        rewards.append(r)
        flags.append((terminated, truncated))
    assert flags[-1] == (False, True) and rewards == [0.0, 0.0, 0.0, 1.0]
    assert info["sequence"] == [one] * 4 + [task.vocab.eos]
    with pytest.raises(ValueError, match="not a token id"):
        env.reset(seed=0)
        env.step(0)


def test_batched_rollout_uses_the_same_reward_code():
    task = CopyTask(num_symbols=3, max_length=4, train_size=6, valid_size=2, test_size=2)
    policy = make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab, hidden_size=8)
    data = task.split("train")
    reward = make_reward("bleu", task.vocab)
    out = rollout(policy, reward, num_samples=3, data=data, dense=True)
    assert out.reward.shape == (18,)
    assert torch.equal(out.references.tokens[:3], data.tokens[[0, 0, 0]])
    torch.testing.assert_close(out.reward_t.sum(1), out.reward)
    torch.testing.assert_close(out.reward, compute_reward(reward, out.samples.batch.with_context(None), out.references))


def test_copy_reverse_and_toy_translation():
    copy, rev = CopyTask(train_size=5, seed=3), ReverseTask(train_size=5, seed=3)
    for (s, t), (s2, t2) in zip(copy.pairs("train"), rev.pairs("train")):
        assert s == t == s2 and t2 == s[::-1]
    toy = ToyTranslationTask(train_size=50, valid_size=5, test_size=5)
    lengths = toy.split("train").lengths - 1
    assert int(lengths.min()) >= 15 and int(lengths.max()) <= 25
    src, tgt = toy.pairs("train")[0]
    assert toy.translate(src) == tgt  # no noise by default
    # adjectives follow their noun: "d0 a1 n2" → lex(d0) lex(n2) lex(a1)
    assert toy.translate(["d0", "a1", "n2"]) == toy.lexicon["d0"] + toy.lexicon["n2"] + toy.lexicon["a1"]


def test_toy_translation_zipf_frequencies():
    """With zipf = s the k-th noun is drawn ∝ k^−s: n0 about twice as often as n1 for s = 1."""
    toy = ToyTranslationTask(train_size=3000, valid_size=5, test_size=5, num_nouns=20, zipf=1.0)
    nouns = [w for s, _ in toy.pairs("train") for w in s if w.startswith("n")]
    counts = torch.tensor([nouns.count(f"n{k}") for k in range(20)], dtype=torch.float64)
    expected = 1.0 / torch.arange(1, 21, dtype=torch.float64)
    expected = expected / expected.sum() * len(nouns)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # χ²(19) 0.999 quantile
    uniform = ToyTranslationTask(train_size=3000, valid_size=5, test_size=5, num_nouns=20)
    nouns_u = [w for s, _ in uniform.pairs("train") for w in s if w.startswith("n")]
    assert max(nouns_u.count(f"n{k}") for k in range(20)) < 2 * len(nouns_u) / 20
    with pytest.raises(ValueError, match="zipf must be"):
        ToyTranslationTask(zipf=-1.0)


def test_text_pair_reader(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("".join(f"s{i % 7} s{i % 3}\tt{i % 7} t{i % 3} t1\n" for i in range(60)))
    task = TextPairTask(tsv, seed=0)
    assert sum(task.split(s).batch_size for s in ("train", "valid", "test")) == 60
    assert task.vocab.unk is not None and task.split("train").context is not None
    src, tgt = tmp_path / "a.src", tmp_path / "a.tgt"
    src.write_text("x y\nz\n")
    tgt.write_text("X Y\nZ\n")
    assert read_text_pairs(src, tgt) == [(["x", "y"], ["X", "Y"]), (["z"], ["Z"])]
    tgt.write_text("X Y\n")
    with pytest.raises(BatchError, match="has 2 lines but"):
        read_text_pairs(src, tgt)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n")
    with pytest.raises(BatchError, match="empty data"):
        read_text_pairs(empty)
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tc\n")
    with pytest.raises(BatchError, match="bad.tsv:1"):
        read_text_pairs(bad)


def test_unknown_env_lists_known():
    with pytest.raises(KeyError, match="seqrl/Motif-v0"):
        task_for_env("seqrl/Atari-v0")
