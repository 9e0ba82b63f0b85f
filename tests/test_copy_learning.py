"""Every algorithm learns the copy task (the identity-env idea of stable-baselines3).

Teacher-forced algorithms start from scratch; reward-driven ones (REINFORCE, MIXER, SPG,
ERPO with a model proposal) start, as in the papers, from a weak MLE policy, and must lift
test BLEU (greedy) from there to the threshold. Training reward: hamming (cheap, dense).
"""

import pytest
import torch

from seqrl.algorithms import make_algorithm
from seqrl.envs import CopyTask
from seqrl.metrics import corpus_bleu
from seqrl.policies import make_policy
from seqrl.training import FitConfig, fit

TASK = CopyTask(num_symbols=4, min_length=2, max_length=4, train_size=400, valid_size=50, test_size=100, seed=0)
FAST = dict(progress=False, device="cpu")
OPTIM = dict(batch_size=32, lr=1e-2)


def new_policy():
    torch.manual_seed(0)
    return make_policy("seq2seq", TASK.vocab, TASK.max_len, source_vocab=TASK.source_vocab, hidden_size=32,
                       embedding_dim=16, dropout=0.0)


def bleu(policy) -> float:
    test = TASK.split("test")
    hyps = policy.greedy(1, test.context).batch.to_strings(TASK.vocab)
    return corpus_bleu(hyps, test.to_strings(TASK.vocab))


@pytest.fixture(scope="module")
def weak_mle_state():
    policy = new_policy()
    fit(make_algorithm("mle", policy, **OPTIM), TASK.split("train"), config=FitConfig(max_epochs=2, **FAST))
    return {k: v.clone() for k, v in policy.state_dict().items()}, bleu(policy)


SCRATCH = {  # name: (config, BLEU threshold)
    "mle": ({}, 95.0),
    # The papers' recipe (y* and n-gram replacements, softmax(R/τ) weights), as seqrl bench runs it; the
    # exact default's target, exp(R/τ) over every length, is tested in test_raml_target.py.
    "raml": ({"reward": "hamming", "proposal": "ngram", "include_reference": True, "normalization": "self",
              "density_correction": False}, 85.0),
    "data_noising": ({"gamma": 0.05}, 85.0),
    "scheduled_sampling": ({"k": 50.0}, 90.0),
    # Interpolation checks the validation reward once per epoch (400 pairs / 32 = 13 steps).
    "interpolation": ({"reward": "hamming", "valid": TASK.split("valid"), "check_every": 13}, 90.0),
}
# From BLEU 53.77 after 2 MLE epochs; the threshold is on the mean test BLEU of the runs with
# WARM_SEEDS. One run is not a test: from the same weak MLE, the test BLEU of single 6-epoch runs
# spread (seeds 0-4 of FitConfig.seed, torch.set_num_threads(1)) over reinforce 84.3-97.8 (mean 93.2),
# mixer 70.4-87.9 (mean 78.8), spg 88.5-93.7 (mean 91.0), erpo 82.8-96.7 (mean 89.9); 2 threads instead
# of 1 changes rounding and moves a run as much as a new seed does (reinforce seed 0: 84.3 → 88.2), so
# a fresh CPU is one more draw from that spread (mixer at 78.5 failed a single-run threshold of 80).
# With s.d. ≈ 6.5 per run, a mean of 3 runs has s.d. ≈ 3.8: thresholds sit ≥ 3 s.d. of it below the
# measured means.
WARM_SEEDS = (0, 1, 2)
WARM = {
    "reinforce": ({"reward": "hamming", "baseline": "mean", "num_samples": 4}, 80.0),
    "mixer": ({"reward": "hamming", "delta": 1, "anneal_every": 13}, 65.0),
    "spg": ({"reward": "hamming", "num_samples": 4, "reward_temperature": 0.5}, 80.0),
    "erpo": ({"reward": "hamming", "alpha": 0.5, "beta": 0.5, "proposal": "model", "num_samples": 4}, 78.0),
}


@pytest.mark.parametrize("name", list(SCRATCH))
def test_learns_copy_from_scratch(name):
    config, threshold = SCRATCH[name]
    policy = new_policy()
    algorithm = make_algorithm(name, policy, **OPTIM, **config)
    fit(algorithm, TASK.split("train"), config=FitConfig(max_epochs=12, **FAST))
    assert bleu(policy) >= threshold


@pytest.mark.parametrize("name", list(WARM))
def test_learns_copy_from_weak_mle(name, weak_mle_state):
    state, start = weak_mle_state
    config, threshold = WARM[name]
    scores = []
    for seed in WARM_SEEDS:
        policy = new_policy()
        policy.load_state_dict(state)
        fit(make_algorithm(name, policy, **config, batch_size=32, lr=3e-3), TASK.split("train"),
            config=FitConfig(max_epochs=6, seed=seed, **FAST))
        scores.append(bleu(policy))
    assert start < 60, start  # the task is not already solved (53.77 with 1 or 2 threads)
    assert sum(scores) / len(scores) >= threshold, (start, scores)
