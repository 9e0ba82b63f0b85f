"""The core's contracts: optimizer groups owned by the algorithm, the setup phase, the ranking of evaluations,
validation an algorithm schedules on, rewards' optional attributes, paired comparisons in the bench tables,
bit-identical resume."""

import math

import pytest
import torch

from seqrl import exact
from seqrl.algorithms import ALGORITHMS, MLE, make_algorithm, mle_loss
from seqrl.bench.stats import bootstrap_interval, paired_differences, paired_table
from seqrl.bench.suite import RunRecord
from seqrl.policies import make_policy
from seqrl.rewards import REWARDS, BaseReward, Reward
from seqrl.training import FitConfig, FitState, Ranking, default_evaluate, fit

FAST = dict(progress=False, device="cpu")


def _data(vocab, n=32):
    space = exact.enumerate_sequences(vocab, 3)
    return space.index(torch.arange(n) % space.batch_size)


class TwoGroups(MLE):
    """MLE plus a free scalar trained by its own optimizer (lr 0, so it must not move; no clipping)."""

    def __init__(self, policy, config=None):
        super().__init__(policy, config)
        self.extra = torch.nn.Parameter(torch.tensor(1.0))
        self.add_optimizer("extra", [self.extra], lr=0.0, clip=None)

    def update(self, batch):
        loss = mle_loss(self.policy.token_log_probs(batch), batch.mask_t) + 1e3 * self.extra ** 2
        return self.optimize(loss)


def test_each_optimizer_group_has_its_own_lr_and_clipping(binary_vocab):
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=8, dropout=0.0)
    algo = TwoGroups(policy, MLE.Config(batch_size=8, lr=1e-2, clip_grad_norm=0.5))
    before = [p.detach().clone() for p in policy.parameters()]
    seen = []

    class Record:
        def on_step_end(self, algorithm, state):
            seen.append(dict(state.metrics))

        def on_evaluation(self, algorithm, state): ...

        def on_fit_end(self, algorithm, state): ...

    fit(algo, _data(binary_vocab), config=FitConfig(max_steps=3, **FAST), callbacks=[Record()])
    assert float(algo.extra.detach()) == 1.0  # its group's lr 0, despite a gradient of 2000
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters()))  # the policy's group moved
    # The policy group is clipped (its norm is reported); the extra group never is (no grad_norm_extra).
    assert all("grad_norm" in m and "grad_norm_extra" not in m for m in seen)


def test_duplicate_or_empty_groups_are_errors(binary_vocab):
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=8)
    with pytest.raises(ValueError, match="group 'policy' made twice"):
        MLE(policy).policy_optimizer()
    frozen = make_policy("lstm", binary_vocab, 3, hidden_size=8)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        MLE(frozen)


def test_setup_gives_the_training_data(binary_vocab):
    """An algorithm that draws its own data (distillation's rejection samples) does it in ``setup``,
    inside ``fit``: no training batch is passed, and the drawn one is what the steps see."""
    drawn = _data(binary_vocab, 12)
    sizes = []

    class Drawing(MLE):
        def setup(self, train):
            assert train is None
            return drawn

        def training_batch(self, batch):
            sizes.append(batch.batch_size)
            return batch

    policy = make_policy("lstm", binary_vocab, 3, hidden_size=8)
    result = fit(Drawing(policy, MLE.Config(batch_size=5)), None, config=FitConfig(max_epochs=2, **FAST))
    assert result.steps == 6 and sizes == [5, 5, 2, 5, 5, 2]


def test_distill_draws_inside_fit(binary_vocab):
    from seqrl.ebm.base import MotifProcessPotential

    torch.manual_seed(0)
    proposal = make_policy("lstm", binary_vocab, 4, hidden_size=8)
    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
    potential = MotifProcessPotential(binary_vocab, "11", 3)
    algo = make_algorithm("distill", policy, potential=potential, proposal=proposal, log_bound=math.log(1e4),
                          num_samples=16, batch_size=8)
    result = fit(algo, None, config=FitConfig(max_epochs=1, **FAST))
    assert result.steps == 2 and algo.summary()["episodes"] >= 16 and 0 < algo.summary()["acceptance_rate"] <= 1


def test_ranking_tracks_the_best_and_stops(binary_vocab):
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=8)
    algo = make_algorithm("mle", policy)
    ranking = Ranking("score", "max", patience=2, keep_best=True)
    state = FitState()
    for step, value in enumerate([0.1, 0.3, 0.2, 0.25], start=1):
        state.step, state.metrics = step, {"score": value}
        if step == 2:
            kept = {k: v.clone() for k, v in algo.state_dict().items()}
        ranking.on_evaluation(algo, state)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(1.0)
    assert ranking.best == 0.3 and ranking.best_step == 2 and state.stop  # two evaluations without improvement
    assert ranking.best_weights is not None
    assert all(torch.equal(v, kept[k]) for k, v in ranking.best_weights.items())
    state.metrics = {"score": math.nan}
    with pytest.raises(FloatingPointError, match="score = nan"):
        ranking.on_evaluation(algo, state)


def test_interpolation_needs_the_validation_data_it_anneals_on(binary_vocab):
    """Interpolation anneals on the validation reward, which it checks itself: without validation data it is
    refused when it is built, not trained with λ frozen; with it, it checks every ``check_every`` steps."""
    policy = make_policy("lstm", binary_vocab, 4, hidden_size=8)
    data = _data(binary_vocab)
    with pytest.raises(ValueError, match="pass valid=<validation batch>"):
        make_algorithm("interpolation", policy, reward="hamming")
    algo = make_algorithm("interpolation", policy, reward="hamming", valid=data, check_every=1, batch_size=8)
    fit(algo, data, config=FitConfig(max_steps=3, **FAST))
    assert algo._snapshot is not None  # it checked (and kept θ for a possible revert)
    # The default evaluation gives the reward too (the reward of greedy decodes).
    scores = default_evaluate(data)(algo)
    assert set(scores) == {"valid_ce", "valid_reward"} and math.isfinite(scores["valid_reward"])


def test_every_builtin_reward_has_the_protocol_attributes(binary_vocab):
    """The attributes the code reads (Reward's docstring lists them) exist on every built-in reward."""
    for name in REWARDS.names():
        if name in ("potential", "weighted", "motif") or ":" in name:
            continue  # these take arguments beyond the vocab (module:function plug-ins loaded by earlier tests too)
        reward = REWARDS.get(name)(vocab=binary_vocab)
        assert isinstance(reward, Reward)
        for attr in ("name", "needs_reference", "terminal_only", "vocab", "reference_symmetric", "allows_neg_inf"):
            assert hasattr(reward, attr), (name, attr)
    assert not BaseReward.reference_symmetric and not BaseReward.allows_neg_inf


def test_bleu_valid_reward_is_corpus_bleu():
    from seqrl.metrics import corpus_bleu
    from seqrl.rewards import make_reward
    from seqrl.types import SequenceBatch, Vocab

    vocab = Vocab(["a", "b", "c", "d"])
    hyps = SequenceBatch.from_strings(["a b c d", "a b d"], vocab)
    refs = SequenceBatch.from_strings(["a b c d", "a b c"], vocab)
    bleu = make_reward("bleu", vocab)
    assert bleu.corpus_score(hyps, refs) == pytest.approx(corpus_bleu(["a b c d", "a b d"], ["a b c d", "a b c"]))


def test_erpo_points_are_listed():
    from seqrl.cli import algorithm_details

    details = algorithm_details()
    assert details["raml"]["erpo_point"] == {"reward": "R", "alpha": 0.0, "beta": 0.4}
    assert details["mle"]["erpo_point"]["reward"] == "delta"
    assert details["dpg"]["erpo_point"] is None and details["dpg"]["requires"]["potential"]
    assert set(details) == set(ALGORITHMS.names())


# --- paired comparisons -------------------------------------------------------------------------------
def test_paired_differences_pair_by_seed_and_the_references_params():
    recs = [RunRecord("mle", s, {"motif": "1", "features": "-"}, {"ce": 10.0 + s}) for s in (0, 1, 2)]
    recs += [RunRecord("dpg", s, {"motif": "1", "features": f}, {"ce": 9.0 + s + (f == "Mv")})
             for s in (0, 1, 2) for f in ("11", "Mv")]
    recs += [RunRecord("dpg", 0, {"motif": "2", "features": "11"}, {"ce": 0.0})]  # no reference: unpaired
    diffs = paired_differences(recs, "ce", "mle")
    assert sorted(diffs["dpg"]) == [-1.0] * 3 + [0.0] * 3


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    lo, hi = bootstrap_interval(values)
    assert lo < 4.0 < hi and (lo, hi) == bootstrap_interval(values)
    assert bootstrap_interval([2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_paired_table_reports_difference_interval_and_wins():
    recs = [RunRecord("mle", s, {}, {"bleu": 50.0}) for s in range(4)]
    recs += [RunRecord("raml", s, {}, {"bleu": 50.0 + d}) for s, d in enumerate([1.0, 2.0, 3.0, -1.0])]
    text = paired_table(recs, "bleu", "max", "mle")
    row = next(line for line in text.splitlines() if line.startswith("raml"))
    assert "+1.250" in row and "3/4" in row and "[" in row
    assert paired_table([RunRecord("raml", 0, {}, {"bleu": 1.0})], "bleu") == ""


# --- resumable training -------------------------------------------------------------------------------
class _InterruptAt:
    """Sends this process SIGINT (a Ctrl-C) at the end of step ``at``."""

    def __init__(self, at):
        self.at = at

    def on_step_end(self, algorithm, state):
        if state.step == self.at:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)

    def on_evaluation(self, algorithm, state): ...

    def on_fit_end(self, algorithm, state): ...


@pytest.mark.parametrize("name, stop_at", [("data_noising", 5), ("reinforce", 7)])
def test_ctrl_c_saves_and_resume_continues_bit_identically(binary_vocab, tmp_path, name, stop_at):
    """An interrupted run resumed from its state file ends with the very parameters, history and best step of
    the uninterrupted run: data order mid-epoch, RNG streams (dropout, noise, sampling), Adam's moments,
    the algorithm's own counters and the early-stopping record all carry over."""
    from seqrl.training import TrainingInterrupted

    data = _data(binary_vocab, 20)
    kwargs = {"reward": "hamming"} if name == "reinforce" else {}

    def new(lr=1e-2):
        torch.manual_seed(3)
        policy = make_policy("lstm", binary_vocab, 3, hidden_size=8, dropout=0.3)
        return make_algorithm(name, policy, batch_size=6, lr=lr, **kwargs)

    config = FitConfig(max_epochs=4, eval_every=3, patience=50, keep="best", seed=11,
                       state_path=str(tmp_path / "state.pt"), **FAST)
    whole = new()
    expected = fit(whole, data, valid=data, config=config)
    (tmp_path / "state.pt").unlink()
    part = new()
    with pytest.raises(TrainingInterrupted, match=f"interrupted at step {stop_at}") as info:
        fit(part, data, valid=data, config=config, callbacks=[_InterruptAt(stop_at)])
    assert info.value.saved == tmp_path / "state.pt"
    resumed = new()
    result = fit(resumed, data, valid=data, config=config, resume_from=tmp_path / "state.pt")
    assert result.steps == expected.steps and result.best_step == expected.best_step
    assert result.history == expected.history
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"another config \(config.lr: 0.01 there, 0.5 here\)"):
        fit(new(lr=0.5), data, valid=data, config=config, resume_from=tmp_path / "state.pt")
    with pytest.raises(ValueError, match=r"other training-loop settings \(loop.seed: 11 there, 12 here\)"):
        fit(new(), data, valid=data, config=FitConfig(**{**vars(config), "seed": 12}),
            resume_from=tmp_path / "state.pt")
    with pytest.raises(FileNotFoundError, match="no training state"):
        fit(new(), data, config=config, resume_from=tmp_path / "missing.pt")
