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


def new_policy(seed: int = 0):
    torch.manual_seed(seed)
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


# A learning run's final BLEU is one draw from a spread: the same run on another CPU (other float kernels) or
# with another torch thread count rounds differently, and in a training run that acts like a new seed (MLE
# scratch, seed 0: 98.56 on an AMD EPYC, 98.39 there with 2 threads, 94.05 on an Intel Xeon). So every threshold
# below is on the mean of a few seeded runs, set from the spread of single runs measured over seeds 0-9 (init
# and FitConfig seed) × torch.set_num_threads(1 and 2), 20 runs per algorithm, and sits ≥ 4 s.d. of that mean
# below its measured mean. A run that does not learn scores far below every threshold: the untrained policy's
# BLEU is 0-2.3 (seeds 0-2), 2 MLE epochs give 53.77 (the warm tests' start).

# Scratch, lr 1e-2: BLEU swings from epoch to epoch (Adam spikes at that rate), so the last epoch's value has a
# heavy low tail, at 12 epochs as at 8 (single runs after epoch 7 or 8 went down to 81.8 for mle, 77.7 for
# data_noising, 73.5 for scheduled_sampling; 12 epochs: to 90.4, 78.4, 83.5, and raml dipped to 84.7 at epoch
# 10). Three runs of 8 epochs cost twice one run of 12 and average the swings out: thresholds are on the mean
# of the SCRATCH_SEEDS runs after 8 epochs. "s.d.3" is the s.d. of such a mean (single-run s.d. / √3); by
# resampling the measured runs, each mean falls below its threshold with probability ≲ 1e-4.
SCRATCH_EPOCHS = 8
SCRATCH_SEEDS = (0, 1, 2)
SCRATCH = {  # name: (config, threshold on the mean test BLEU of the SCRATCH_SEEDS runs)
    # epoch 8: 81.8-100 (mean 94.1, s.d. 5.0; epochs 7-8 pooled: mean 95.0, s.d. 4.5): s.d.3 2.9, 82 sits 4.2
    # below; lowest mean of 3 among the measured seeds 86.5
    "mle": ({}, 82.0),
    # The papers' recipe (y* and n-gram replacements, softmax(R/τ) weights), as seqrl bench runs it; the
    # exact default's target, exp(R/τ) over every length, is tested in test_raml_target.py.
    # epoch 8: 96.0-100 (mean 99.4, s.d. 1.1): s.d.3 0.6; 92 leaves room for a dip like epoch 10's 84.7
    "raml": ({"reward": "hamming", "proposal": "ngram", "include_reference": True, "normalization": "self",
              "density_correction": False}, 92.0),
    # epoch 8: 91.8-100 (mean 96.1, s.d. 2.8), epochs 7-8: 77.7-100 (mean 94.1, s.d. 5.5): s.d.3 3.2, 78 sits 5.1
    # below
    "data_noising": ({"gamma": 0.05}, 78.0),
    # epoch 8: 86.0-100 (mean 96.5, s.d. 4.0), epochs 7-8: 73.5-100 (mean 94.0, s.d. 6.3): s.d.3 3.6, 76 sits 5.0
    # below
    "scheduled_sampling": ({"k": 50.0}, 76.0),
    # Interpolation checks the validation reward once per epoch (400 pairs / 32 = 13 steps), and fit keeps its
    # best-valid-CE weights (evaluated once per epoch), as measured: 8 epochs: 85.4-100 (mean 94.7, s.d. 5.1):
    # s.d.3 2.9, 83 sits 4.0 below; lowest mean of 3 86.6
    "interpolation": ({"reward": "hamming", "valid": TASK.split("valid"), "check_every": 13}, 83.0),
}
# Warm: from BLEU 53.77 after 2 MLE epochs (the same with 1 or 2 threads: 2 epochs are not long enough to
# diverge), 6 epochs at lr 3e-3, FitConfig seeds 0-9 × threads {1, 2} from that one weak policy. Single runs:
# reinforce 83.4-97.9 (mean 92.8, s.d. 5.3), spg 81.5-97.6 (mean 90.8, s.d. 4.2), erpo 82.8-96.7 (mean 90.7,
# s.d. 3.7), mixer 62.4-98.8 (mean 83.0, s.d. 11.4: it reaches 96-97 at epochs 3-4 and falls back once m ≤ 1
# hands (almost) the whole sequence to REINFORCE). Means of 3 runs: s.d. 3.1 / 2.4 / 2.1, so 80 / 80 / 78
# sit 4.2 / 4.5 / 6.0 s.d. below; mixer averages 5 runs (s.d. 5.1): 62 sits 4.1 s.d. below its mean and
# 8 points above the start (lowest mean of 5 among the measured seeds: 71.9).
WARM_SEEDS = (0, 1, 2)
WARM = {  # name: (config, threshold on the mean test BLEU, FitConfig seeds)
    "reinforce": ({"reward": "hamming", "baseline": "mean", "num_samples": 4}, 80.0, WARM_SEEDS),
    "mixer": ({"reward": "hamming", "delta": 1, "anneal_every": 13}, 62.0, (0, 1, 2, 3, 4)),
    "spg": ({"reward": "hamming", "num_samples": 4, "reward_temperature": 0.5}, 80.0, WARM_SEEDS),
    "erpo": ({"reward": "hamming", "alpha": 0.5, "beta": 0.5, "proposal": "model", "num_samples": 4}, 78.0,
             WARM_SEEDS),
}


@pytest.mark.parametrize("name", list(SCRATCH))
def test_learns_copy_from_scratch(name):
    config, threshold = SCRATCH[name]
    scores = []
    for seed in SCRATCH_SEEDS:
        policy = new_policy(seed)
        algorithm = make_algorithm(name, policy, **OPTIM, **config)
        # An algorithm given a validation set (interpolation) is also evaluated on it, and keeps its best-CE weights.
        valid = config.get("valid")
        keep = dict(keep="best", monitor="valid_ce") if valid is not None else {}
        fit(algorithm, TASK.split("train"), valid=valid,
            config=FitConfig(max_epochs=SCRATCH_EPOCHS, seed=seed, **keep, **FAST))
        scores.append(bleu(policy))
    assert sum(scores) / len(scores) >= threshold, scores


@pytest.mark.parametrize("name", list(WARM))
def test_learns_copy_from_weak_mle(name, weak_mle_state):
    state, start = weak_mle_state
    config, threshold, seeds = WARM[name]
    scores = []
    for seed in seeds:
        policy = new_policy()
        policy.load_state_dict(state)
        fit(make_algorithm(name, policy, **config, batch_size=32, lr=3e-3), TASK.split("train"),
            config=FitConfig(max_epochs=6, seed=seed, **FAST))
        scores.append(bleu(policy))
    assert start < 60, start  # the task is not already solved (53.77 with 1 or 2 threads)
    assert sum(scores) / len(scores) >= threshold, (start, scores)
