"""Prompts for the algorithms that draw their own samples (issue 23): completions conditioned on prompts, one
target per prompt, Conditional DPG (Korbak et al., 2022), and ``seqrl.exact`` enumerating π(·|x) per prompt.

The prompted policy here is the attention encoder–decoder reading the prompt as its source (the HF causal LMs read
it as a prefix: tests/test_hf_*.py); the algorithms see only ``batch.context``, whichever policy reads it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import make_algorithm, per_prompt_log_z
from seqrl.ebm.base import base_log_prob
from seqrl.policies import make_policy
from seqrl.prompts import PromptSchedule
from seqrl.rewards.base import FunctionReward
from seqrl.training import FitConfig, fit
from seqrl.types import BatchError, SequenceBatch, Vocab

V = Vocab(["a", "b"])
L = 4  # 15 completions per prompt
PROMPTS = SequenceBatch.from_lists([[3], [4, 3], [4, 4]], pad=0)  # "a", "b a", "b b"
FAST = dict(progress=False, device="cpu", seed=0)


def last_prompt_symbol(batch: SequenceBatch) -> torch.Tensor:
    assert batch.context is not None
    return batch.context.tokens.gather(1, (batch.context.lengths - 1)[:, None]).squeeze(1)


def agree(batch: SequenceBatch) -> torch.Tensor:
    """2·[the completion starts with the prompt's last symbol]: a prompt-dependent score b(x, y)."""
    return 2.0 * (batch.tokens[:, 0] == last_prompt_symbol(batch)).float()


@pytest.fixture
def setting():
    a = make_policy("seq2seq", V, L, source_vocab=V, hidden_size=16, embedding_dim=8, dropout=0.0, seed=0)

    class Conditional:
        """log P(x, y) = log a(y|x) + b(x, y): the conditional EBM of [Korbak et al. 2022], one Z_x per prompt."""

        name = "agree"

        def log_potential(self, batch):
            return base_log_prob(a, batch) + agree(batch)

    space = exact.enumerate_sequences(V, L)
    return a, Conditional(), space


def trainable_copy(a):
    policy = a.frozen_copy()
    for p in policy.parameters():
        p.requires_grad_(True)
    return policy


def test_schedule_visits_every_prompt_and_spreads_the_samples():
    schedule = PromptSchedule(PROMPTS, per_step=2)
    steps = [schedule.step(t, samples=5) for t in range(3)]
    assert [s.index.tolist() for s in steps] == [[0, 1], [2, 0], [1, 2]] and steps[0].per_prompt == 3
    everything = PromptSchedule(PROMPTS).step(7, samples=96)
    assert everything.index.tolist() == [0, 1, 2] and everything.per_prompt == 32
    with pytest.raises(ValueError, match="≥ 1"):
        PromptSchedule(PROMPTS, per_step=0)


def test_per_prompt_normalizer():
    log_w = torch.tensor([0.0, math.log(3.0), -math.inf, -math.inf, math.log(2.0), math.log(2.0)])
    log_z = per_prompt_log_z(log_w, 2).exp()
    assert log_z.tolist() == pytest.approx([2.0, 2.0, 0.0, 0.0, 2.0, 2.0])


def test_exact_targets_have_one_normalizer_per_prompt(setting):
    a, potential, space = setting
    targets = exact.conditional_targets(potential.log_potential, space, PROMPTS)
    pis = exact.conditional_distributions(a, space, PROMPTS)
    assert targets.shape == pis.shape == (3, space.batch_size)
    assert torch.allclose(targets.sum(1), torch.ones(3, dtype=torch.float64))
    assert not torch.allclose(targets[0], targets[2])  # prompts ending in a and in b want different first symbols


@pytest.mark.parametrize("name, settings", [("cdpg", {}), ("cdpg", {"baseline": True}), ("gdcpp", {})])
def test_distribution_matching_reaches_every_prompts_target(setting, name, settings):
    """KL(p_x‖π(·|x)) by enumeration, mean over 3 prompts: from ≈ 0.45 to < 0.02 in 60 steps of 96 completions
    (measured: cdpg 0.012, cdpg with the baseline 0.0005, gdcpp 0.0003)."""
    a, potential, space = setting
    targets = exact.conditional_targets(potential.log_potential, space, PROMPTS)
    policy = trainable_copy(a)
    algo = make_algorithm(name, policy, potential=potential, proposal=a, prompts=PROMPTS, samples_per_step=96,
                          lr=3e-2, **settings)

    def mean_kl() -> float:
        pis = exact.conditional_distributions(policy, space, PROMPTS)
        return sum(exact.kl(targets[i], pis[i]) for i in range(3)) / 3

    before = mean_kl()
    fit(algo, None, config=FitConfig(max_steps=60, **FAST))
    after = mean_kl()
    assert before > 0.3 and after < 0.02, (before, after)
    assert algo.episodes >= 60 * 96


def test_kl_control_on_prompts_reaches_each_prompts_optimum(setting):
    """KL-control with a prompt-dependent reward and the leave-one-out baseline per prompt (RLOO): π(·|x) →
    p_z(·|x) ∝ a(·|x)·e^{r(x,·)/β}, KL(π‖p_z) < 0.02 for every prompt."""
    a, _, space = setting
    policy = trainable_copy(a)
    algo = make_algorithm("kl_control", policy, reward=FunctionReward(agree, "agree"), base=a, beta=1.0,
                          prompts=PROMPTS, samples_per_step=96, lr=3e-2)
    targets = exact.conditional_targets(algo.implied_potential().log_potential, space, PROMPTS)
    fit(algo, None, config=FitConfig(max_steps=60, **FAST))
    pis = exact.conditional_distributions(policy, space, PROMPTS)
    kls = [exact.kl(pis[i], targets[i]) for i in range(3)]
    assert max(kls) < 0.02, kls


def test_cdpg_needs_prompts(setting):
    a, potential, _ = setting
    with pytest.raises(ValueError, match="pass prompts="):
        make_algorithm("cdpg", trainable_copy(a), potential=potential)


# --- prompts from files, on the command line --------------------------------------------------------------
MOTIF = ["--env", "seqrl/Motif-v0", "--task-set", "motif=101", "--task-set", "length=6", "--device", "cpu",
         "--no-progress"]


def seqrl_train(capsys, *argv):
    from seqrl.cli import main

    code = main(["train", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ones_count(batch):
    """log P(x, y) = ½·(number of 1s in y): a plug-in potential (the motif vocabulary's "1" is id 4)."""
    return (batch.tokens == 4).float().sum(1) * 0.5


def test_read_prompts_lines_and_jsonl(tmp_path):
    from seqrl.prompts import read_prompt_texts, read_prompts

    (tmp_path / "p.txt").write_text("a b\n\n b \n")
    assert read_prompt_texts(tmp_path / "p.txt") == ["a b", " b "]
    assert read_prompts(tmp_path / "p.txt", V).to_lists() == [[3, 4], [4]]  # no EOS added to a prompt
    (tmp_path / "p.jsonl").write_text('{"prompt": "b a", "id": 1}\n{"prompt": "a"}\n')
    assert read_prompts(tmp_path / "p.jsonl", V).to_lists() == [[4, 3], [3]]


@pytest.mark.parametrize("text, message", [
    ("", "holds no prompt"),
    ('{"prompt": "a"}\n{"prompt": 3}\n', r'p.jsonl:2: expected an object with a "prompt" string'),
    ('{"prompt": "a"}\n{oops\n', r"p.jsonl:2: not JSON"),
    ("a c\n", r"prompt 1 \('a c'\): unknown symbol 'c'"),
])
def test_bad_prompt_files_are_refused_with_the_line(tmp_path, text, message):
    from seqrl.prompts import read_prompts

    path = tmp_path / ("p.jsonl" if "{" in text else "p.txt")
    path.write_text(text)
    with pytest.raises((ValueError, BatchError), match=message):
        read_prompts(path, V)


def test_seqrl_train_cdpg_on_a_prompts_file(capsys, tmp_path, monkeypatch):
    """``--prompts`` defines the task (the policy reads each prompt as its source), ``--valid-prompts`` the
    evaluation (the estimated KL(p_x‖π) toward the potential), ``--steps`` alone the length."""
    import json

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    (tmp_path / "train.txt").write_text("1 0\n0 0 1\n")
    (tmp_path / "valid.jsonl").write_text('{"prompt": "1"}\n{"prompt": "0 1"}\n')
    code, out, err = seqrl_train(capsys, "cdpg", *MOTIF, "--prompts", tmp_path / "train.txt", "--valid-prompts",
                                 tmp_path / "valid.jsonl", "--potential", "test_prompts:ones_count", "--steps", 4,
                                 "--eval-every", 2, "--set", "samples_per_step=32")
    assert code == 0, err
    report = json.loads(out)
    assert report["monitor"] == "valid_kl_p_pi" and report["steps"] == 4
    assert report["final_evaluation"]["episodes"] == 4 * 32 and "test_ce" not in report


@pytest.mark.parametrize("argv, message", [
    (["mle", "--prompts", "{train}", "--epochs", "1"], "mle learns from the task's references"),
    (["cdpg", "--steps", "2", "--potential", "test_prompts:ones_count"], "cdpg trains one target per prompt"),
    (["kl_control", "--steps", "2", "--valid-prompts", "{train}"], "give --prompts FILE too"),
    (["kl_control", "--steps", "2", "--prompts", "{train}", "--policy", "lstm"], "policy 'lstm' reads no prompts"),
    (["kl_control", "--steps", "2", "--prompts", "{train}", "--keep", "best"], "give them"),
    (["gdcpp", "--steps", "2", "--prompts", "{train}"], "give --scorer"),
    (["kl_control", "--steps", "2", "--prompts", "{missing}"], "--prompts: no such file"),
])
def test_prompt_options_that_cannot_work_are_refused(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    (tmp_path / "train.txt").write_text("1 0\n")
    argv = [a.format(train=tmp_path / "train.txt", missing=tmp_path / "nope.txt") for a in argv]
    code, _, err = seqrl_train(capsys, argv[0], *MOTIF, *argv[1:])
    assert code == 2 and message in err, err


def test_by_default_each_prompt_of_a_step_gets_several_completions():
    """Many prompts, few samples: a step takes as many prompts as get 4 completions each (a per-prompt baseline
    or Ẑ_x from one completion carries no signal), and a pass visits every prompt."""
    many = SequenceBatch.from_lists([[3 + (i % 2)] * (1 + i % 3) for i in range(50)], pad=0)
    schedule = PromptSchedule(many, None, samples=64)
    assert schedule.per_step == 16 and schedule.step(0, 64).per_prompt == 4
    seen = torch.cat([schedule.step(t, 64).index for t in range(4)])
    assert set(seen.tolist()) == set(range(50))
    assert PromptSchedule(PROMPTS, None, samples=64).per_step == 3  # few prompts: all of them, every step


def test_cdpg_refuses_one_completion_per_prompt(setting):
    a, potential, _ = setting
    with pytest.raises(ValueError, match="one completion per prompt"):
        make_algorithm("cdpg", trainable_copy(a), potential=potential, prompts=PROMPTS, samples_per_step=3,
                       prompts_per_step=3)
