"""One seed of the seq2seq suite (:class:`seqrl.bench.seq2seq.Seq2SeqSuite`): the task, the MLE pretraining when a
row needs it, each row (its critic's own phase first where the protocol says so), the equal-budget control, and
their records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..algorithms import Offer, config_fields, resolve_algorithm
from ..envs.tasks import PairTask, TextPairTask
from ..metrics import corpus_bleu, cross_entropy, reward_score
from ..policies import make_policy
from ..rewards import make_reward
from ..training import FitConfig, FitResult
from ..utils import seed_everything
from .rows import Row, run_row, suite_defaults
from .seq2seq_presets import CONTROL, MONITORS, PRESETS, ablation_rows, protocol_settings
from .suite import BenchOptions, RunRecord


class _Job:
    """One seed of the suite: the task, the pretraining (when a row needs it), every row, their records."""

    def __init__(self, suite: Any, job: dict[str, Any], options: BenchOptions) -> None:
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
