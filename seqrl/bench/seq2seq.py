"""The seq2seq suite: the ERPO family on conditional tasks with BLEU/ROUGE ([ERPO] Tables 1–2).

Per seed, the attention encoder–decoder is first trained by MLE with early stopping on
validation CE (or on validation BLEU: ``scratch_monitor``). Two protocols then differ in where
the other objectives start:

* ``finetune``: every algorithm, ``mle`` included, starts from that policy and trains for the
  same budget at a smaller lr with early stopping on validation BLEU (the MLE policy itself is
  the ``mle_pretrained`` row). A gain over ``mle`` is the objective's, not the extra epochs'.
* ``scratch``: the objectives that learn from a random initialization (those whose class declares
  ``requires.from_scratch``: MLE, RAML, data noising, scheduled sampling, interpolation) train from
  one, with the pretraining's budget and stopping
  rule, as in the papers that introduced them and the ERPO authors' code; the MLE run is the
  ``mle`` row. MIXER (whose first phase is MLE), REINFORCE and SPG fine-tune the MLE policy as
  above.

``--preset erpo-table1`` and ``--preset critics-table1`` (:data:`PRESETS`) run a paper's table: its rows and its
protocol (which rows train from a random start, the budgets, the pay-off, the critics trained as phases of their own
before their rows, the equal-budget control ``mle_continued`` of the rows that fine-tune), each setting citing its
source; ``--set`` and ``--set ALGO.FIELD`` still win over them.

Test corpus BLEU (sacrebleu) and ROUGE-1/2/L (rouge-score) use beam search of width 5, and
:func:`~seqrl.metrics.exposure_bias` measures how much one wrong prefix token costs each
policy; the table reports mean ± std over seeds.
"""

from __future__ import annotations

import inspect
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..algorithms import ALGORITHMS, Offer, config_fields, resolve_algorithm
from ..config import check_ranges
from ..envs.tasks import TASKS, PairTask, TextPairTask, ToyTranslationTask
from ..metrics import corpus_bleu, corpus_rouge, cross_entropy, exposure_bias, reward_score
from ..policies import MAX_WIDTH, make_policy
from ..rewards import REWARDS, make_reward
from ..training import FitConfig, FitResult
from ..utils import seed_everything
from .rows import Row, run_row, suite_defaults
from .stats import format_table
from .suite import BenchOptions, RunRecord, Suite, override_settings, register_suite

PROTOCOLS = ("finetune", "scratch")
MONITORS: dict[str, Literal["min", "max"]] = {"valid_ce": "min", "valid_reward": "max", "valid_bleu": "max"}
"""Validation metrics that can stop training and pick its checkpoint, and their direction."""


@dataclass(frozen=True, kw_only=True)
class Seq2SeqSettings:
    """The full run: MLE pretraining to convergence (92–110 epochs on every seed in
    docs/benchmarks.md) on a toy task that does not saturate (Zipfian lexicon of 600 words)."""

    task: str = "toy_translation"
    """The task, by its name in ``seqrl.envs.TASKS``: ``toy_translation`` (the next five settings shape it) or
    another conditional task built with the sizes below and ``data_seed`` where its constructor takes them,
    e.g. ``variant_translation`` (docs/seq2seq-task.md). A ``--grid data=FILE`` run reads the file instead."""
    train_size: int = 1000
    valid_size: int = 100
    test_size: int = 200
    noise: float = 0.15
    lexicon_scale: int = 10
    """Multiplies the toy grammar's 30 nouns / 15 verbs / 15 adjectives: rarer words, less data each."""
    zipf: float = 1.0
    """Zipf exponent of word frequencies within each class (0: uniform); see ToyTranslationTask."""
    hidden_size: int = 64
    embedding_dim: int = 32
    dropout: float = 0.2
    lr: float = 3e-3
    finetune_lr: float = 3e-4
    """Fine-tuning from the MLE policy uses a smaller step (RL updates at the pretraining lr
    destroyed the pretrained policy in an early quick grid: REINFORCE 99 → 70 BLEU)."""
    batch_size: int = 32
    mle_epochs: int = 150
    finetune_epochs: int = 5
    patience: int = 8
    eval_every: int | None = None
    """Steps between validations (None: one epoch). Interpolation anneals on validation decreases:
    on a small training set, evaluate less often than every epoch so that BLEU's trend, not its
    noise, drives λ (300 pairs: every 50 steps; docs/benchmarks.md)."""
    beam_size: int = 5
    reward: str = "bleu"
    """The suite's reward R: what reward-driven algorithms optimize and what ``valid_reward``
    measures (its corpus score where it has one: corpus BLEU for ``bleu``)."""
    pretrain_algorithm: str = "mle"
    """The algorithm that trains the policy every fine-tuning row starts from."""
    protocol: str = "finetune"
    """Where the objectives start: the pretrained policy (``finetune``) or, for algorithms that declare
    ``requires.from_scratch``, a random initialization (``scratch``); see the module docstring."""
    scratch_monitor: str = "valid_ce"
    """What stops training from scratch and picks the checkpoint it returns: validation CE
    (minimized), ``valid_reward`` or ``valid_bleu`` (maximized). CE stops MLE while its BLEU still climbs,
    since its overconfidence raises CE first; with BLEU, set ``patience`` past the budget, since BLEU
    sits near 0 for the first hundreds of steps (docs/benchmarks.md, "equal budgets")."""
    finetune_monitor: str = "valid_reward"
    """What stops fine-tuning and picks its checkpoint: by default the suite's reward on validation."""
    ablation: bool = False
    """Run ERAC's ablations instead of the algorithm rows ([VAML/ERAC] Sec. 6.4): the target-network
    rate β × the smoothing weight λ_var grid of Table 3 and ERAC without future entropy (Table 4), beside
    ``mle`` and ``ac``; ``seqrl bench seq2seq --ablation``."""
    ablation_quick: tuple[float, ...] = (0.001, 1.0)
    """The β values of the ablation under ``--quick`` (the full grid: Table 3's 0.001, 0.01, 0.1, 1)."""
    ablation_betas: tuple[float, ...] | None = None
    """The β values of the ablation without ``--quick`` (None: Table 3's 0.001, 0.01, 0.1, 1)."""
    data_seed: int = 0
    """Seed of the data set, fixed across runs: a run's seed varies initialization and sampling
    only, so that ± std measures the algorithms, not the draw of the data."""
    preset: str | None = None
    """A paper's table (:data:`PRESETS`: ``erpo-table1``, ``critics-table1``): its rows and protocol, beneath any
    other ``--set`` (``seqrl bench seq2seq --preset NAME`` is ``--set preset=NAME``)."""
    critic_phase: Literal["in_budget", "own"] = "in_budget"
    """Where the critics of ERAC/AC (App. B.3's critic pretraining) and VAML (phase 1, Alg. 1) learn:
    ``in_budget``, inside the row's budget (the first steps of its run, the actor fixed); ``own``, as a run of its
    own before the row's (critic only, ``critic_epochs`` at most, early stopping on the critic's validation loss
    with ``critic_patience``, its best weights kept), the row then getting the whole budget: the papers' protocol
    (App. B.3: pretrain the actor, then the critic with the actor fixed, then both; B.2: Q "until converged")."""
    critic_epochs: int = 20
    """The critic's own phase at most this many epochs (the authors' ``train_critic.py``: ``--epochs 20``)."""
    critic_patience: int = 3
    """Evaluations without a better validation critic loss before the critic's own phase stops."""
    finetune_control: bool = True
    """Under protocol ``scratch``, when a row fine-tunes the MLE policy (SPG, MIXER, AC, ERAC…), add the row
    ``mle_continued``: MLE from that policy with the fine-tuning budget and settings, the equal-budget control
    those rows are compared with (under ``finetune`` the ``mle`` row is that control)."""

    def __post_init__(self) -> None:
        check_ranges(self, at_least_zero=("data_seed", "zipf"),
                     fractions=("noise", "dropout"),
                     limits={"hidden_size": MAX_WIDTH, "embedding_dim": MAX_WIDTH, "beam_size": 1000,
                             "lexicon_scale": 10_000})


QUICK = Seq2SeqSettings(train_size=300, lexicon_scale=3, zipf=0.0, mle_epochs=30, finetune_epochs=3, patience=5)
"""A smoke run of every algorithm in minutes: pretraining is cut at 30 epochs, before it converges."""


PROTOCOL: dict[str, dict[str, Any]] = {
    "raml": {"proposal": "ngram", "include_reference": True, "normalization": "self", "density_correction": False},
    "reinforce": {"baseline": "self_critical"},
    "spg": {"guide_reward": "hamming", "reward_temperature": 0.5, "num_samples": 2},
}
"""The suite's settings for some algorithms, beside each algorithm's own defaults (which ``seqrl train`` and the
API use): RAML as the papers run it (y* plus n-gram replacements, softmax(R/τ) weights over the candidates; over
a translation vocabulary, the exact default's q ∝ exp(BLEU/τ) on the whole space is nearly uniform over nonsense);
REINFORCE with the self-critical baseline (one sample per source suffices); SPG's proposal guided by hamming's
ΔR (vectorized; sentence BLEU's is not), its weights still by the suite's reward."""


@dataclass(frozen=True)
class Preset:
    """A paper's table as a run of the suite: its rows, the suite settings of its protocol (beneath ``--set``), the
    ``--quick`` changes on top of them, and per-algorithm settings (beneath ``--set ALGO.FIELD``)."""

    algos: tuple[str, ...]
    settings: dict[str, Any]
    quick: dict[str, Any]
    algorithm_settings: dict[str, dict[str, Any]]
    source: str
    extra_rows: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    """(label, algorithm, config overrides) rows after ``algos`` (an ablation row of the same paper)."""


_QUICK_PRESET = {"train_size": 300, "mle_epochs": 3, "finetune_epochs": 1, "patience": 3, "critic_epochs": 1}
"""``--quick`` with a preset: a smoke run that sizes the full one (every row, every phase, minutes)."""

PRESETS: dict[str, Preset] = {
    "erpo-table1": Preset(
        algos=("mle", "raml", "spg", "mixer", "scheduled_sampling", "interpolation"),
        settings={"task": "variant_translation", "protocol": "scratch", "mle_epochs": 30, "patience": 30,
                  "scratch_monitor": "valid_bleu", "finetune_epochs": 10, "finetune_monitor": "valid_bleu"},
        quick=_QUICK_PRESET,
        algorithm_settings={"raml": {"beta": 0.4, "num_samples": 10}},
        source="[ERPO] Sec. 5 and App. C.2, and the authors' Texar code (examples/seq2seq_exposure_bias): MLE, "
               "RAML (10 n-gram samples, τ = 0.4), scheduled sampling (k = 500) and interpolation (λ = (0.04, 0, "
               "0.96), ±0.06 on each drop of validation BLEU, checked every epoch) each train from a random start "
               "for a fixed number of epochs (config_iwslt14.py: 50; here 30, for CPU time: MLE's validation CE "
               "stops improving after 19–32 epochs on this task, docs/seq2seq-task.md) with validation every epoch "
               "and the test score of the best validation BLEU (no early stopping); SPG and MIXER, for which the "
               "paper gives no protocol beyond MIXER's advantage R(y) − R(y*_{1:m}), fine-tune the MLE policy (10 "
               "epochs, best validation "
               "BLEU) beside the equal-budget control mle_continued. Model, lr and batch are the task's "
               "(docs/seq2seq-task.md), not IWSLT's."),
    "critics-table1": Preset(
        algos=("mle", "raml", "vaml", "ac", "erac"),
        settings={"task": "variant_translation", "protocol": "scratch", "reward": "bleu_scaled", "mle_epochs": 30,
                  "patience": 30, "scratch_monitor": "valid_bleu", "finetune_epochs": 10,
                  "finetune_monitor": "valid_bleu", "critic_phase": "own", "critic_epochs": 20, "critic_patience": 3},
        quick=_QUICK_PRESET,
        algorithm_settings={
            "raml": {"reward": "bleu", "beta": 1.0, "num_samples": 5},
            "vaml": {"weight_reward": "bleu", "weight_tau": 1.0, "tau": 0.4, "kappa": 0.2, "num_samples": 5,
                     "q_num_samples": 5},
            "erac": {"actor_entropy": "normalized", "beta": 0.1},
            "ac": {"actor_entropy": "normalized", "beta": 0.1},
        },
        extra_rows=(("erac[no future entropy]", "erac", {"future_entropy": False}),),
        source="[VAML/ERAC] Sec. 6.1, App. B and Tables 5–6, read with the authors' code (zihangdai/ERAC-VAML): the "
               "pay-off is sentence BLEU × |y*| (Sec. 6.1; get_rewards(scale_reward=True)) for the critics' token "
               "rewards (train_critic.py, train_erac.py, train_q.py); RAML and VAML train from a random start "
               "(train_vaml.py builds a new actor) with M = 5 (y* and 4 n-gram replacements) weighted by "
               "softmax(sentence BLEU), i.e. unscaled BLEU at τ = 1 (train_vaml.py; Table 5's τ = 0.4 with the "
               "scaled pay-off would put weight e^-8 on every replacement), VAML's Q-network (τ = 0.4, κ = 0.2) "
               "trained first as its own phase (train_q.py); AC and ERAC fine-tune the MLE actor after their critic "
               "is pretrained with the actor fixed as its own phase to convergence (App. B.3, train_critic.py), "
               "with Table 6's rates, λ_var = 0.001 on the variance of Q (Q_all.var(2)), Adam β1 = 0 in joint "
               "training (train_erac.py) and the actor's entropy term normalized as train_erac.py does it, and the "
               "target network's rate β = 0.1 (Table 3: 29.32 validation BLEU against 29.41 at Table 6's 0.001; "
               "at 0.001 the target moves 1 − 0.999^640 = 47% of the way in the whole ≤ 640-step critic phase; on "
               "validation, the critic's squared error against the sampled returns after 10 epochs was 3.38 at "
               "β = 0.1, 6.46 at 0.01 and 9.97 at 0.001, the returns' variance 6.49: benchmarks/"
               "critic_target_probe.py, docs/benchmarks.md); they are compared with the equal-budget control "
               "mle_continued. Scratch rows: 30 epochs (the authors' train_actor.py / train_vaml.py: 30), best "
               "validation BLEU; fine-tuning: 10 epochs. Model, lr and batch are the task's "
               "(docs/seq2seq-task.md). The row erac[no future entropy] (τ kept in the actor, 0 in the critic's "
               "target) is Table 4's ablation."),
}
"""The papers' tables as suite runs (``seqrl bench seq2seq --preset NAME``); each setting cites its source."""


def preset_settings(name: str | None, quick: bool) -> dict[str, Any]:
    """The suite settings preset ``name`` sets (its ``quick`` ones on top under ``--quick``); {} for None."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {tuple(PRESETS)}")
    preset = PRESETS[name]
    return {**preset.settings, **(preset.quick if quick else {}), "preset": name}


def protocol_settings(name: str, eval_every: int) -> dict[str, Any]:
    """The suite's settings for algorithm ``name``: :data:`PROTOCOL`'s, and its own validation checks (where it
    schedules on them) at the suite's evaluation interval."""
    settings = dict(PROTOCOL.get(name, {}))
    if "check_every" in config_fields(resolve_algorithm(name)):
        settings["check_every"] = eval_every
    return settings


TABLE3_BETAS = (0.001, 0.01, 0.1, 1.0)
TABLE3_LAMBDA_VARS = (0.0, 0.001)


def ablation_rows(betas: tuple[float, ...] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, algorithm, config overrides) of ERAC's ablation ([VAML/ERAC] Tables 3–4): MLE and AC for
    reference, ERAC at every β × λ_var (β = 1: no target network; λ_var = 0: no smoothing), and ERAC
    with τ kept in the actor but set to 0 in the critic ("w/o future entropy")."""
    rows: list[tuple[str, str, dict[str, Any]]] = [("mle", "mle", {}), ("ac", "ac", {})]
    for beta in betas or TABLE3_BETAS:
        for lambda_var in TABLE3_LAMBDA_VARS:
            rows.append((f"erac[beta={beta:g},lambda_var={lambda_var:g}]", "erac",
                         {"beta": beta, "lambda_var": lambda_var}))
    rows.append(("erac[no future entropy]", "erac", {"future_entropy": False}))
    return rows


@register_suite("seq2seq")
class Seq2SeqSuite(Suite):
    """Runs every registered algorithm that learns from references (``requires.data``) and needs no
    potential; each gets what its :class:`~seqrl.algorithms.base.Requirements` name and its
    :meth:`~seqrl.algorithms.base.Algorithm.bench_kwargs` defaults."""

    name = "seq2seq"
    offers = frozenset({"data", "reward", "validation"})
    settings_class = Seq2SeqSettings
    grid_options = ("data",)
    comparison = ("bleu", "max")

    def __init__(self) -> None:
        self.curves: list[dict[str, Any]] = []

    def settings_for(self, options: BenchOptions) -> Seq2SeqSettings:
        base = QUICK if options.quick else Seq2SeqSettings()
        preset = preset_settings(options.settings.get("preset"), options.quick)
        st = override_settings(base, {**preset, **options.settings})
        if st.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {st.protocol!r}; expected one of {PROTOCOLS}")
        for key in ("scratch_monitor", "finetune_monitor"):
            if getattr(st, key) not in MONITORS:
                raise ValueError(f"unknown {key} {getattr(st, key)!r}; expected one of {tuple(MONITORS)}")
        REWARDS.get(st.reward)  # an unknown name fails before any training, naming the known ones
        TASKS.get(st.task)
        ALGORITHMS.get(st.pretrain_algorithm)
        return st

    def jobs(self, options: BenchOptions) -> list[dict[str, Any]]:
        st = self.settings_for(options)
        seeds = options.seeds or (0, 1, 2)
        data = options.grid.get("data")
        if data:  # read once now: a malformed file fails, naming its line, before anything is written
            TextPairTask(data[0], seed=st.data_seed)
        return [{"seed": s, "data": data[0] if data else None} for s in seeds]

    def run_job(self, job: dict[str, Any], options: BenchOptions) -> list[RunRecord]:
        return _Job(self, job, options).run()

    @staticmethod
    def build_task(st: Seq2SeqSettings) -> PairTask:
        """The task ``st.task`` names: the toy translation shaped by the suite's settings, or any other
        registered conditional task with ``train_size``/``valid_size``/``test_size`` and ``seed=data_seed``
        passed where its constructor takes them."""
        if st.task == "toy_translation":
            k = st.lexicon_scale
            return ToyTranslationTask(train_size=st.train_size, valid_size=st.valid_size, test_size=st.test_size,
                                      noise=st.noise, zipf=st.zipf, num_nouns=30 * k, num_verbs=15 * k,
                                      num_adjectives=15 * k, seed=st.data_seed)
        cls = TASKS.get(st.task)
        given = {"train_size": st.train_size, "valid_size": st.valid_size, "test_size": st.test_size,
                 "seed": st.data_seed}
        accepted = inspect.signature(cls).parameters
        task = cls(**{k: v for k, v in given.items() if k in accepted})
        if not isinstance(task, PairTask):
            raise ValueError(f"task {st.task!r} is not a conditional task of sentence pairs; the seq2seq suite "
                             "needs sources and references")
        return task

    @staticmethod
    def _record(name, seed, params, policy, task, test, st, result: FitResult,
                extra: dict[str, float] | None = None) -> RunRecord:
        """Test metrics of ``policy`` (the checkpoint ``result`` restored, evaluated at ``best_step``)."""
        policy.eval()
        best, _ = policy.beam_search(test.context.to(policy.device), beam_size=st.beam_size)
        hyps, refs = best.to_strings(task.vocab), test.to_strings(task.vocab)
        rouge = corpus_rouge(hyps, refs)
        # The same corrupted positions and symbols for every row: a fixed generator.
        bias = exposure_bias(policy, test, generator=torch.Generator().manual_seed(st.data_seed))
        length_ratio = sum(len(h.split()) for h in hyps) / max(1, sum(len(r.split()) for r in refs))
        metrics = {"bleu": corpus_bleu(hyps, refs), "rouge1": rouge["rouge1"], "rouge2": rouge["rouge2"],
                   "length_ratio": length_ratio,
                   "rougeL": rouge["rougeL"], "exposure_drop": 100 * bias["accuracy_drop"],
                   "corrupted_nll": bias["corrupted_nll"], "steps": float(result.steps),
                   "best_step": float(result.best_step), "wall_s": result.wall_s, **(extra or {})}
        return RunRecord(name, seed, dict(params), metrics)

    def table(self, records: list[RunRecord]) -> str:
        rows = []
        for algo in dict.fromkeys(r.algorithm for r in records):
            rs = [r for r in records if r.algorithm == algo]
            row: list[Any] = [algo, len(rs)]
            for m in ("bleu", "rouge1", "rouge2", "rougeL", "exposure_drop"):
                vals = [r.metrics[m] for r in rs]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                row.append(f"{statistics.fmean(vals):.2f} ± {sd:.2f}")
            row.append(statistics.fmean(r.metrics["wall_s"] for r in rs))
            rows.append(row)
        header = ["algorithm", "seeds", "BLEU", "ROUGE-1", "ROUGE-2", "ROUGE-L", "exposure drop (pp)", "wall_s"]
        return ("Test set, beam 5, mean ± std over seeds (cf. [ERPO] Tables 1–2); exposure drop: next-token\n"
                "accuracy lost after one wrong prefix token (seqrl.metrics.exposure_bias), percentage points:\n"
                + format_table(header, rows))

    def plot(self, records: list[RunRecord], out: Path) -> list[Path]:
        """``seq2seq_valid_bleu.png``: validation BLEU against optimizer steps, runs from a random start
        and fine-tuning runs (from the pretrained policy) in separate panels; seeds as a mean line with a
        min–max band."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .report import BAND_NOTE, seed_band

        (out / "seq2seq_curves.json").write_text(json.dumps(self.curves, indent=1))

        def scratch(curve: dict[str, Any]) -> bool:  # curves written before "from_scratch" was recorded
            return bool(curve.get("from_scratch", str(curve["algorithm"]).endswith("_pretrained")))

        panels = [(title, [c for c in self.curves if c["points"] and scratch(c) == flag])
                  for title, flag in (("from a random start (pretraining, or scratch protocol)", True),
                                      ("fine-tuning from the pretrained policy", False))]
        panels = [p for p in panels if p[1]] or panels[:1]
        labels = list(dict.fromkeys(c["algorithm"] for c in self.curves))
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
        for ax, (title, curves) in zip(axes[0], panels):
            for label in dict.fromkeys(c["algorithm"] for c in curves):
                series = [[(p["step"], p.get("valid_bleu")) for p in c["points"]]
                          for c in curves if c["algorithm"] == label]
                seed_band(ax, series, label=label, color=f"C{labels.index(label) % 10}")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("optimizer steps")
            ax.set_ylabel("validation BLEU, greedy (0–100)")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.suptitle(f"seq2seq suite: validation BLEU during training; {BAND_NOTE}", fontsize=10)
        fig.tight_layout()
        path = out / "seq2seq_valid_bleu.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return [path, out / "seq2seq_curves.json"]


CONTROL = "mle_continued"
"""The equal-budget control of the fine-tuning rows under protocol ``scratch``."""


class _Job:
    """One seed of the suite: the task, the pretraining (when a row needs it), every row, their records."""

    def __init__(self, suite: Seq2SeqSuite, job: dict[str, Any], options: BenchOptions) -> None:
        self.suite, self.options = suite, options
        st = self.st = suite.settings_for(options)
        self.seed, self.scratch, self.pretrain_name = job["seed"], st.protocol == "scratch", st.pretrain_algorithm
        if job["data"]:
            self.task: PairTask = TextPairTask(job["data"], seed=st.data_seed)
            task_name = Path(job["data"]).name
        else:
            self.task, task_name = suite.build_task(st), st.task
        task = self.task
        self.train_set, self.valid, self.test = task.split("train"), task.split("valid"), task.split("test")
        steps_per_epoch = math.ceil(self.train_set.batch_size / st.batch_size)
        self.eval_every = st.eval_every or steps_per_epoch
        self.reward = make_reward(st.reward, task.vocab)
        self.preset = PRESETS[st.preset] if st.preset else None
        # Fine-tuning may not return a policy worse on validation than the one it started from.
        self.scratch_cfg = FitConfig(max_epochs=st.mle_epochs, patience=st.patience, eval_every=self.eval_every,
                                     keep="best", monitor=st.scratch_monitor, mode=MONITORS[st.scratch_monitor])
        self.finetune_cfg = FitConfig(max_epochs=st.finetune_epochs, patience=st.patience,
                                      eval_every=self.eval_every, keep="best", monitor=st.finetune_monitor,
                                      mode=MONITORS[st.finetune_monitor], evaluate_at_start=True)
        self.params = {"task": task_name, "train_size": self.train_set.batch_size, "reward": st.reward,
                       "beam": st.beam_size, "protocol": st.protocol}
        if self.scratch:
            self.params["scratch_monitor"] = st.scratch_monitor
        if st.preset:
            self.params["preset"] = st.preset
        self.critics: dict[str, Any] = {}

    def from_scratch(self, name: str) -> bool:
        """Whether ``name`` trains from a random initialization (else: from the pretrained policy)."""
        return self.scratch and resolve_algorithm(name).requires.from_scratch

    def rows(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(label, algorithm, overrides) of every row: the ablation's, ``--algos``, the preset's or the defaults."""
        st, options = self.st, self.options
        if st.ablation:
            return ablation_rows(st.ablation_quick if options.quick else st.ablation_betas)
        if options.algos or not self.preset:
            return [(name, name, {}) for name in options.algos or self.suite.default_algos()]
        return [(name, name, {}) for name in self.preset.algos] + list(self.preset.extra_rows)

    def new_policy(self):
        seed_everything(self.seed)
        st, task = self.st, self.task
        return make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab,
                           hidden_size=st.hidden_size, embedding_dim=st.embedding_dim, dropout=st.dropout)

    def evaluate(self, alg) -> dict[str, float]:
        valid, vocab = self.valid, self.task.vocab
        assert valid.context is not None  # translation splits carry their sources
        hyps = alg.policy.greedy(1, valid.context.to(alg.policy.device)).batch
        bleu = corpus_bleu(hyps.to_strings(vocab), valid.with_context(None).to_strings(vocab))
        return {"valid_bleu": bleu, "valid_reward": reward_score(self.reward, alg.policy, valid),
                "valid_ce": cross_entropy(alg.policy, valid)}

    def settings(self, name: str, scratch_run: bool, overrides: dict[str, Any] | None) -> dict[str, Any]:
        """The row's algorithm settings: the suite's protocol, the preset's, the loop's batch and lr, the row's."""
        st = self.st
        preset = self.preset.algorithm_settings.get(name, {}) if self.preset else {}
        return {**protocol_settings(name, self.eval_every), **preset, "batch_size": st.batch_size,
                **suite_defaults(name, lr=st.lr if scratch_run else st.finetune_lr), **(overrides or {})}

    def train(self, name: str, policy, *, pretraining: bool = False, label: str | None = None,
              overrides: dict[str, Any] | None = None, finetune: bool = False) -> tuple[FitResult, Any]:
        """Train ``policy`` in place by ``name`` (the one row runner); from scratch, stop on ``scratch_monitor``
        (by default validation CE: BLEU stays at 0 for the first epochs and would exhaust a short patience);
        ``finetune``: with the fine-tuning budget and settings whatever the protocol. Returns what fit did and the
        algorithm."""
        st = self.st
        scratch_run = not finetune and (pretraining or self.from_scratch(name))
        epochs = st.mle_epochs if scratch_run else st.finetune_epochs
        offer = Offer(train=self.train_set, valid=self.valid, reward=st.reward, epochs=epochs, from_scratch=scratch_run)
        row = Row(name, lambda: policy, offer, self.settings(name, scratch_run, overrides),
                  self.scratch_cfg if scratch_run else self.finetune_cfg, train=self.train_set, evaluate=self.evaluate)
        _, algorithm, result = run_row(row, self.options, self.seed)
        label = f"{name}_pretrained" if pretraining and not self.scratch else (label or name)
        self.suite.curves.append({"algorithm": label, "seed": self.seed, "from_scratch": scratch_run,
                                  "points": _curve(result.history)})
        return result, algorithm

    def critic_phase(self, name: str, policy, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        """The critic of row ``name`` trained as its own phase (``critic_phase="own"``): only the critic learns, for at
        most ``critic_epochs``, stopped on its validation loss; returns (the row's settings that hand it over,
        metrics of the phase). VAML's critic reads only y*, so it is trained once per seed."""
        st = self.st
        if name in self.critics:
            return self.critics[name]
        offer = Offer(train=self.train_set, valid=self.valid, reward=st.reward, epochs=st.critic_epochs,
                      from_scratch=False)
        fit_cfg = FitConfig(max_epochs=st.critic_epochs, patience=st.critic_patience, eval_every=self.eval_every,
                            keep="best", monitor="valid_critic", mode="min")
        settings = {**self.settings(name, False, overrides), "critic_only": True}
        row = Row(name, lambda: policy, offer, settings, fit_cfg, train=self.train_set,
                  evaluate=lambda alg: {"valid_critic": alg.critic_valid_loss(self.valid)})
        _, algorithm, result = run_row(row, self.options, self.seed)
        handover = {"critic": algorithm.critic, **({"critic_pretrain_steps": 0} if name != "vaml" else {"q_steps": 0})}
        best = min((h["valid_critic"] for h in result.history if "valid_critic" in h), default=math.nan)
        metrics = {"critic_steps": float(result.steps), "critic_best_step": float(result.best_step),
                   "critic_valid": best, "critic_wall_s": result.wall_s}
        self.suite.curves.append({"algorithm": f"{name}_critic", "seed": self.seed, "from_scratch": False,
                                  "points": [{k: h[k] for k in ("step", "valid_critic") if k in h}
                                             for h in result.history if "valid_critic" in h]})
        if name == "vaml":
            self.critics[name] = (handover, metrics)
        return handover, metrics

    def own_critic(self, name: str) -> bool:
        return self.st.critic_phase == "own" and "critic_only" in config_fields(resolve_algorithm(name))

    def record(self, label, policy, result, extra=None) -> RunRecord:
        return self.suite._record(label, self.seed, self.params, policy, self.task, self.test, self.st, result,
                                  extra)

    def run(self) -> list[RunRecord]:
        rows = self.rows()
        algos = list(dict.fromkeys(name for _, name, _ in rows))
        finetuned = [name for name in algos if name != self.pretrain_name and not self.from_scratch(name)]
        policy = self.new_policy()
        records = []
        pretrained: dict[str, Any] = {}
        if not self.scratch or any(name == self.pretrain_name for name in algos) or finetuned:
            pretrain, _ = self.train(self.pretrain_name, policy, pretraining=True)
            pretrained = {k: v.detach().clone() for k, v in policy.state_dict().items()}
            if not self.scratch:
                records.append(self.record(f"{self.pretrain_name}_pretrained", policy, pretrain))
        for label, name, overrides in rows:
            if self.scratch and name == self.pretrain_name and not overrides:  # the pretraining run is this row
                policy.load_state_dict(pretrained)
                records.append(self.record(label, policy, pretrain))
                continue
            records.append(self.run_row(label, name, overrides, policy, pretrained))
        if self.scratch and finetuned and self.st.finetune_control and CONTROL not in algos:
            policy.load_state_dict(pretrained)
            result, _ = self.train("mle", policy, label=CONTROL, finetune=True)
            records.append(self.record(CONTROL, policy, result))
        return records

    def run_row(self, label, name, overrides, policy, pretrained) -> RunRecord:
        """One row: its critic's own phase first when it has one, then its training, then its record."""
        extra: dict[str, float] = {}
        if self.own_critic(name):
            if pretrained:  # ERAC/AC's critic evaluates the pretrained actor
                policy.load_state_dict(pretrained)
            handover, extra = self.critic_phase(name, policy, overrides)
            overrides = {**overrides, **handover}
        if self.from_scratch(name):
            policy = self.new_policy()
        else:
            policy.load_state_dict(pretrained)
        result, _ = self.train(name, policy, label=label, overrides=overrides)
        return self.record(label, policy, result, extra)


def _curve(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """Validation BLEU and CE per evaluation, with interpolation's λ and the critic's loss on the last training
    batch (ERAC/AC's TD error, VAML's soft Q-learning loss) where the algorithm reports them."""
    keys = ("step", "valid_bleu", "valid_reward", "valid_ce", "lambda1", "lambda2", "lambda3", "critic_loss", "q_loss")
    return [{k: h[k] for k in keys if k in h} for h in history if "valid_bleu" in h]
