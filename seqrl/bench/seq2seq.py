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
    data_seed: int = 0
    """Seed of the data set, fixed across runs: a run's seed varies initialization and sampling
    only, so that ± std measures the algorithms, not the draw of the data."""

    def __post_init__(self) -> None:
        check_ranges(self, at_least_zero=("data_seed", "zipf"), fractions=("noise", "dropout"),
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
        st = override_settings(QUICK if options.quick else Seq2SeqSettings(), options.settings)
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
        st = self.settings_for(options)
        scratch = st.protocol == "scratch"
        pretrain_name = st.pretrain_algorithm

        def from_scratch(name: str) -> bool:
            """Whether ``name`` trains from a random initialization (else: from the pretrained policy)."""
            return scratch and resolve_algorithm(name).requires.from_scratch

        seed = job["seed"]
        task: PairTask
        if job["data"]:
            task = TextPairTask(job["data"], seed=st.data_seed)
            task_name = Path(job["data"]).name
        else:
            task, task_name = self.build_task(st), st.task
        train_set, valid, test = task.split("train"), task.split("valid"), task.split("test")
        steps_per_epoch = math.ceil(train_set.batch_size / st.batch_size)
        eval_every = st.eval_every or steps_per_epoch
        reward = make_reward(st.reward, task.vocab)

        def evaluate(alg) -> dict[str, float]:
            assert valid.context is not None  # translation splits carry their sources
            hyps = alg.policy.greedy(1, valid.context.to(alg.policy.device)).batch
            refs = valid.with_context(None)
            bleu = corpus_bleu(hyps.to_strings(task.vocab), refs.to_strings(task.vocab))
            return {"valid_bleu": bleu, "valid_reward": reward_score(reward, alg.policy, valid),
                    "valid_ce": cross_entropy(alg.policy, valid)}

        # Fine-tuning may not return a policy worse on validation than the one it started from.
        scratch_cfg = FitConfig(max_epochs=st.mle_epochs, patience=st.patience, eval_every=eval_every, keep="best",
                                monitor=st.scratch_monitor, mode=MONITORS[st.scratch_monitor])
        finetune_cfg = FitConfig(max_epochs=st.finetune_epochs, patience=st.patience, eval_every=eval_every,
                                 keep="best", monitor=st.finetune_monitor, mode=MONITORS[st.finetune_monitor],
                                 evaluate_at_start=True)

        def new_policy():
            seed_everything(seed)
            return make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab,
                               hidden_size=st.hidden_size, embedding_dim=st.embedding_dim, dropout=st.dropout)

        def train(name: str, policy, *, pretraining: bool = False, label: str | None = None,
                  overrides: dict[str, Any] | None = None) -> FitResult:
            """Train ``policy`` in place by ``name`` (the one row runner); from scratch, stop on ``scratch_monitor``
            (by default validation CE: BLEU stays at 0 for the first epochs and would exhaust a short patience)."""
            scratch_run = pretraining or from_scratch(name)
            epochs = st.mle_epochs if scratch_run else st.finetune_epochs
            offer = Offer(train=train_set, valid=valid, reward=st.reward, epochs=epochs, from_scratch=scratch_run)
            settings = {**protocol_settings(name, eval_every), "batch_size": st.batch_size,
                        **suite_defaults(name, lr=st.lr if scratch_run else st.finetune_lr), **(overrides or {})}
            row = Row(name, lambda: policy, offer, settings, scratch_cfg if scratch_run else finetune_cfg,
                      train=train_set, evaluate=evaluate)
            _, _, result = run_row(row, options, seed)
            label = f"{name}_pretrained" if pretraining and not scratch else (label or name)
            self.curves.append({"algorithm": label, "seed": seed, "from_scratch": scratch_run,
                                "points": _curve(result.history)})
            return result

        params = {"task": task_name, "train_size": train_set.batch_size, "reward": st.reward, "beam": st.beam_size,
                  "protocol": st.protocol}
        if scratch:
            params["scratch_monitor"] = st.scratch_monitor
        rows = ablation_rows(st.ablation_quick if options.quick else None) if st.ablation else \
            [(name, name, {}) for name in (options.algos or self.default_algos())]
        algos = list(dict.fromkeys(name for _, name, _ in rows))
        policy = new_policy()
        records = []
        if not scratch or any(name == pretrain_name or not from_scratch(name) for name in algos):
            pretrain = train(pretrain_name, policy, pretraining=True)
            pretrained = {k: v.detach().clone() for k, v in policy.state_dict().items()}
            if not scratch:
                records.append(self._record(f"{pretrain_name}_pretrained", seed, params, policy, task, test, st,
                                            pretrain))
        for label, name, overrides in rows:
            if scratch and name == pretrain_name and not overrides:  # the pretraining run is this algorithm
                policy.load_state_dict(pretrained)
                records.append(self._record(label, seed, params, policy, task, test, st, pretrain))
                continue
            if from_scratch(name):
                policy = new_policy()
            else:
                policy.load_state_dict(pretrained)
            result = train(name, policy, label=label, overrides=overrides)
            records.append(self._record(label, seed, params, policy, task, test, st, result))
        return records

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
    def _record(name, seed, params, policy, task, test, st, result: FitResult) -> RunRecord:
        """Test metrics of ``policy`` (the checkpoint ``result`` restored, evaluated at ``best_step``)."""
        policy.eval()
        best, _ = policy.beam_search(test.context.to(policy.device), beam_size=st.beam_size)
        hyps, refs = best.to_strings(task.vocab), test.to_strings(task.vocab)
        rouge = corpus_rouge(hyps, refs)
        # The same corrupted positions and symbols for every row: a fixed generator.
        bias = exposure_bias(policy, test, generator=torch.Generator().manual_seed(st.data_seed))
        metrics = {"bleu": corpus_bleu(hyps, refs), "rouge1": rouge["rouge1"], "rouge2": rouge["rouge2"],
                   "rougeL": rouge["rougeL"], "exposure_drop": 100 * bias["accuracy_drop"],
                   "corrupted_nll": bias["corrupted_nll"], "steps": float(result.steps),
                   "best_step": float(result.best_step), "wall_s": result.wall_s}
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


def _curve(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """Validation BLEU and CE per evaluation, with interpolation's λ and the critic's loss on the last training
    batch (ERAC/AC's TD error, VAML's soft Q-learning loss) where the algorithm reports them."""
    keys = ("step", "valid_bleu", "valid_reward", "valid_ce", "lambda1", "lambda2", "lambda3", "critic_loss", "q_loss")
    return [{k: h[k] for k in keys if k in h} for h in history if "valid_bleu" in h]
