"""The training loop with MLE: reaches the data distribution, is deterministic, checks inputs."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import ALGORITHMS, make_algorithm, mle_loss
from seqrl.envs import CopyTask
from seqrl.policies import make_policy
from seqrl.training import Callback, FitConfig, fit, load_checkpoint, save_checkpoint
from seqrl.types import BatchError, SequenceBatch, Vocab
from seqrl.utils import DeviceError, resolve_device

FAST = dict(progress=False, device="cpu")


def empirical_data(vocab: Vocab, max_len: int, n: int, seed: int = 0) -> tuple[SequenceBatch, torch.Tensor]:
    """n draws from a fixed random distribution over the space, and their empirical p_data."""
    space = exact.enumerate_sequences(vocab, max_len)
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(space.batch_size, generator=g) ** 3
    idx = torch.multinomial(weights, n, replacement=True, generator=g)
    p_data = torch.bincount(idx, minlength=space.batch_size).double() / n
    return space.index(idx), p_data


def test_mle_loss_hand_computed():
    logp_t = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    mask_t = torch.tensor([[True, True, False], [True, False, False]])
    assert float(mle_loss(logp_t, mask_t)) == pytest.approx((3.0 + 0.5) / 2)
    assert float(mle_loss(logp_t, mask_t, "token")) == pytest.approx(3.5 / 3)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        mle_loss(logp_t[0], mask_t[0])


def test_mle_drives_kl_to_data_distribution_below_001(binary_vocab):
    max_len = 4
    data, p_data = empirical_data(binary_vocab, max_len, 400)
    torch.manual_seed(0)
    policy = make_policy("lstm", binary_vocab, max_len, hidden_size=32, num_layers=1, dropout=0.0)
    space = exact.enumerate_sequences(binary_vocab, max_len)
    kl_before = exact.kl(p_data, exact.policy_distribution(policy, space))
    fit(make_algorithm("mle", policy, batch_size=400, lr=3e-2), data, config=FitConfig(max_epochs=300, **FAST))
    kl_after = exact.kl(p_data, exact.policy_distribution(policy, space))
    assert kl_before > 0.3
    # every torch seed s → s + 1000k (k = 0-4) × 1 and 2 threads: 0.00014-0.00092 (mean 0.00036, s.d. 0.0003), 11× below
    # 0.01; the untrained policy is at 0.94-0.99.
    assert kl_after < 0.01


def test_same_seed_same_parameters(binary_vocab):
    data, _ = empirical_data(binary_vocab, 4, 64)

    def run(seed):
        torch.manual_seed(seed)
        policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
        fit(make_algorithm("mle", policy, batch_size=16), data, config=FitConfig(max_epochs=3, seed=seed, **FAST))
        return torch.cat([p.detach().flatten() for p in policy.parameters()])

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_early_stopping_restores_best_and_callbacks_see_state(binary_vocab):
    data, _ = empirical_data(binary_vocab, 4, 64)
    seen = []

    class Record(Callback):
        def on_evaluation(self, algorithm, state):
            seen.append(state.metrics["valid_ce"])
            if state.step >= 6:
                state.stop = True

    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
    result = fit(make_algorithm("mle", policy, batch_size=32), data, valid=data,
                 config=FitConfig(max_epochs=50, keep="best", **FAST), callbacks=[Record()])
    assert result.steps == 6 and len(seen) == 3 and result.kept == "best" and result.kept_step == result.best_step
    assert result.best == pytest.approx(min(seen))
    from seqrl.metrics import cross_entropy

    assert cross_entropy(policy, data) == pytest.approx(min(seen), rel=1e-5)  # best weights restored


def test_evaluations_run_every_eval_every_steps_and_after_the_last(binary_vocab):
    """No silent rollback to an earlier evaluation: the last step is always evaluated, and with ``keep="last"``
    (the default) the weights are the last step's: 5 steps with eval_every=4 are not the 4-step run."""
    data, _ = empirical_data(binary_vocab, 4, 64)
    steps = []

    class Record(Callback):
        def on_evaluation(self, algorithm, state):
            steps.append(state.step)

    def run(max_steps):
        torch.manual_seed(0)
        policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
        result = fit(make_algorithm("mle", policy, batch_size=16), data, valid=data,
                     config=FitConfig(max_steps=max_steps, eval_every=4, **FAST), callbacks=[Record()])
        return result, [p.detach().clone() for p in policy.parameters()]

    five, weights5 = run(5)
    assert steps == [4, 5] and five.kept == "last" and five.kept_step == 5 and five.final["step"] == 5
    _, weights4 = run(4)
    assert any(not torch.equal(a, b) for a, b in zip(weights4, weights5))


def test_evaluate_at_start_can_restore_the_initial_weights(binary_vocab):
    """When no evaluation after the start beats it, the starting policy comes back."""
    data, _ = empirical_data(binary_vocab, 4, 64)

    def run(at_start: bool):
        torch.manual_seed(0)
        policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
        initial = [p.detach().clone() for p in policy.parameters()]
        calls = []

        def worsening(algorithm) -> dict[str, float]:  # every evaluation worse than the last
            calls.append(len(calls))
            return {"valid_ce": float(len(calls))}

        result = fit(make_algorithm("mle", policy, batch_size=16), data, evaluate=worsening,
                     config=FitConfig(max_steps=4, eval_every=2, evaluate_at_start=at_start, keep="best", **FAST))
        same = all(torch.equal(a, b) for a, b in zip(initial, policy.parameters()))
        return result, same

    result, same = run(True)
    assert same and result.best_step == 0 and [h["step"] for h in result.history] == [0, 2, 4]
    result, same = run(False)
    assert not same and result.best_step == 2 and [h["step"] for h in result.history] == [2, 4]


def test_patience_stops_training(binary_vocab):
    data, _ = empirical_data(binary_vocab, 4, 64)
    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
    # lr = 0: validation never improves after the first evaluation.
    result = fit(make_algorithm("mle", policy, batch_size=64, lr=0.0), data, valid=data,
                 config=FitConfig(max_epochs=100, patience=3, **FAST))
    assert result.steps == 4


def test_checkpoint_roundtrip(tmp_path, binary_vocab):
    task = CopyTask(num_symbols=3, max_length=4, train_size=8, valid_size=2, test_size=2)
    for name in ("lstm", "seq2seq", "transformer"):
        vocab = task.vocab
        policy = make_policy(name, vocab, task.max_len, source_vocab=task.source_vocab if name == "seq2seq" else None)
        path = save_checkpoint(tmp_path / f"{name}.pt", policy)
        loaded = load_checkpoint(path)
        batch = task.split("train") if name == "seq2seq" else task.split("train").with_context(None)
        policy.eval()
        torch.testing.assert_close(loaded.sequence_log_prob(batch), policy.sequence_log_prob(batch))


def test_bad_inputs(binary_vocab):
    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
    mle = make_algorithm("mle", policy)
    with pytest.raises(BatchError, match="non-empty training batch"):
        fit(mle, None, config=FitConfig(**FAST))
    with pytest.raises(DeviceError, match="unknown device 'gpu7'"):
        resolve_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(KeyError, match="unknown algorithm 'ppo'; known: .*mle"):
        make_algorithm("ppo", policy)
    with pytest.raises(TypeError, match="unknown config fields"):
        make_algorithm("mle", policy, learning_rate=3)
    assert "mle" in ALGORITHMS.names()


def test_nan_loss_is_reported(binary_vocab):
    data, _ = empirical_data(binary_vocab, 4, 16)
    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
    with torch.no_grad():
        policy.output.bias.fill_(math.nan)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        fit(make_algorithm("mle", policy), data, config=FitConfig(max_epochs=1, **FAST))


def test_mle_learns_copy_task():
    task = CopyTask(num_symbols=4, max_length=5, train_size=500, valid_size=50, test_size=50)
    torch.manual_seed(0)
    policy = make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab,
                         hidden_size=64, embedding_dim=32)
    fit(make_algorithm("mle", policy, batch_size=32, lr=3e-3), task.split("train"), valid=task.split("valid"),
        config=FitConfig(max_epochs=15, **FAST))
    test = task.split("test")
    best, _ = policy.beam_search(test.context, beam_size=3)
    exact_match = sum(a == b for a, b in zip(best.to_strings(task.vocab), test.to_strings(task.vocab))) / 50
    # Seeds 0-9 (init and FitConfig seed) × 1 and 2 threads: 0.90-1.00 (mean 0.975, s.d. 0.029; the thread count
    # moves a run like a new seed: seed 2 gives 1.00 with 1 thread, 0.94 with 2). 0.85 sits 4.3 s.d. below the
    # mean; 0.9 was 2.6 s.d. and met exactly by seed 5. An untrained policy copies none of the 50.
    assert exact_match >= 0.85
