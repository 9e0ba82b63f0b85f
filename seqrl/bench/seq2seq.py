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
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..algorithms import ALGORITHMS
from ..config import check_ranges
from ..envs.tasks import TASKS, PairTask, TextPairTask, ToyTranslationTask
from ..metrics import corpus_bleu, corpus_rouge, exposure_bias
from ..policies import MAX_WIDTH
from ..rewards import REWARDS
from ..training import FitResult
from .seq2seq_job import _Job
from .seq2seq_presets import (  # noqa: F401  (re-exported: the suite's protocols live there)
    CONTROL,
    MONITORS,
    PRESETS,
    PROTOCOL,
    PROTOCOLS,
    TABLE3_BETAS,
    TABLE3_LAMBDA_VARS,
    Preset,
    ablation_rows,
    preset_settings,
    protocol_settings,
)
from .stats import format_table
from .suite import BenchOptions, RunRecord, Suite, override_settings, register_suite


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
