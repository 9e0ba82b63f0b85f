"""``seqrl train ALGO --env ENV``: one algorithm on one environment's task, built by the same builder as the suites
and the API (:func:`~seqrl.algorithms.make_algorithm`), every option checked before anything is built."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    UsageError,
    field_type,
    non_negative,
    non_negative_float,
    out_dir,
    positive,
    progress,
    progress_options,
    set_threads,
    split_sets,
    tensorboard_dir,
    with_option,
)
from .lm import check_model_options, load_model, model_settings, quiet_transformers, save_model


def add_parser(sub: Any, choices: Callable[[str], str]) -> None:
    p = sub.add_parser("train", help="train one algorithm on one environment's task",
                       epilog=f"algorithms: {choices('algorithms')} (or module:Class). environments: "
                              f"{choices('envs')}. policies: {choices('policies')}. rewards: {choices('rewards')}.")
    p.add_argument("algorithm", help=f"one of: {choices('algorithms')}, or module:Class for your own")
    p.add_argument("--env", help=f"environment id (or --model): {choices('envs')}")
    p.add_argument("--model", metavar="DIR",
                   help="a local transformers causal LM and its tokenizer (save_pretrained's folder; never a hub "
                        "name: seqrl downloads nothing) as the policy; with --out, the result goes to OUT/model")
    p.add_argument("--policy", help=f"policy (default: lstm, or seq2seq for conditional tasks): {choices('policies')}")
    p.add_argument("--init", metavar="PATH", help="start from a saved policy (a policy.pt of seqrl train or bench, "
                                                  "or an OUT/model folder) instead of a random one")
    p.add_argument("--epochs", type=positive, default=None,
                   help="passes over the training data (algorithms that learn from data; default 20)")
    p.add_argument("--steps", type=positive, default=None,
                   help="optimizer steps (required for algorithms that draw their own samples; with --epochs, the run "
                        "stops at whichever ends first)")
    p.add_argument("--batch-size", type=positive, default=None,
                   help="the algorithm's batch: references per step, or samples per step for dpg/kl_control/… "
                        "(default: the algorithm's own)")
    p.add_argument("--lr", type=non_negative_float, default=None, help="Adam learning rate (default: the algorithm's)")
    p.add_argument("--eval-every", type=positive, default=None,
                   help="steps between evaluations (default: one epoch, or 100 steps); one always runs at the end")
    p.add_argument("--keep", choices=("last", "best"), default="last",
                   help="the weights to keep and save: the last step's (default) or the best evaluation's by --monitor")
    p.add_argument("--monitor", default=None,
                   help="evaluation metric that ranks evaluations (default: valid_reward for reward algorithms, "
                        "else valid_ce)")
    p.add_argument("--patience", type=positive, default=None,
                   help="ranked evaluations without improvement before stopping (default: never)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive, default=None, help="torch CPU threads (default 1: measured fastest "
                                                                    "on small models, docs/benchmarks.md)")
    p.add_argument("--seed", type=non_negative, default=0, help="seeds the data, the policy and training")
    p.add_argument("--out", help="directory for policy.pt, train.json, metrics.csv and the resumable state.pt")
    p.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard events to DIR "
                                                        "(needs seqrl[tensorboard])")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out (state.pt)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the algorithm's config (`seqrl list --json` lists them), e.g. --set tau=0.1")
    p.add_argument("--task-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument of the environment's task, e.g. --task-set train_size=500")
    p.add_argument("--policy-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument of the policy, e.g. --policy-set hidden_size=32")
    p.add_argument("--reward", metavar="NAME",
                   help="the algorithm's reward: a registered name or module:function (a plug-in; the module is "
                        "imported from sys.path or the current directory)")
    p.add_argument("--potential", metavar="NAME",
                   help="the EBM for dpg/gdcpp/…: a registered name or module:function giving log P(x) (default: the "
                        "task's own; on the motif task the GAM P_λ = r·exp(λ·φ), r trained first)")
    p.add_argument("--scorer", metavar="NAME",
                   help="the EBM P(x, y) = a(y|x)·b(x, y) for dpg/gdcpp/cdpg/…, a the starting policy and b ≥ 0 this "
                        "function's score (a reward name or module:function, e.g. of completions=; a 0/1 score is "
                        "a pointwise constraint): disco's base * scorer")
    p.add_argument("--prompts", metavar="FILE",
                   help="train on these prompts (one per line, or JSON lines with a \"prompt\" field), each step "
                        "sampling completions of them: algorithms that draw their own samples; the policy must read "
                        "prompts (seq2seq, an HF model)")
    p.add_argument("--valid-prompts", metavar="FILE", help="prompts to evaluate on (the reward, or the estimated "
                                                           "KL(p_x‖π) toward a potential, of 16 completions each)")
    progress_options(p)
    p.set_defaults(func=cmd_train)


@dataclass
class TrainPlan:
    """A checked command line: nothing built yet."""

    cls: Any
    task_cls: Any
    task_kwargs: dict[str, Any]
    settings: dict[str, Any]
    policy_name: str | None
    policy_kwargs: dict[str, Any]
    out: Path | None
    fit: dict[str, Any] = field(default_factory=dict)
    prompt_texts: list[str] | None = None
    valid_prompt_texts: list[str] | None = None
    model: Path | None = None
    """The language model's directory (``--model``, or ``--init DIR``); None: a seqrl policy on ``--env``."""


def plan(args: argparse.Namespace) -> TrainPlan:
    """Every option parsed and checked (names, numbers, paths, combinations) before anything is built."""
    from ..algorithms import resolve_algorithm
    from ..config import parse_settings
    from ..envs import ENV_IDS, task_for_env
    from ..envs.tasks import TASKS

    cls = resolve_algorithm(args.algorithm)
    model = check_model_options(args, cls)
    task_cls = None
    if model is None:
        task_cls = TASKS.get(ENV_IDS.get(args.env, args.env)) if (args.env in ENV_IDS or args.env in TASKS) else None
        if task_cls is None:
            task_for_env(args.env)  # raises, listing the known environments
        if args.init is not None and (args.policy is not None or args.policy_set):
            raise UsageError("--init brings its own policy: drop --policy/--policy-set")
        if args.init is not None and not Path(args.init).is_file():
            raise UsageError(f"--init {args.init!r}: no such file")
    elif args.task_set:
        raise UsageError("--task-set sets a seqrl env's task; a --model run has none: drop it")
    out = out_dir(args.out)
    tensorboard_dir(args.tensorboard)
    _check_resume(args, out)
    task_kwargs = parse_settings(split_sets(args.task_set, "--task-set"), task_cls, "--task-set") if task_cls else {}
    settings = _algorithm_settings(args, cls)
    if not cls.uses_data and args.steps is None:
        raise UsageError(f"{cls.name} draws its own samples: give --steps N (its length in optimizer steps)")
    prompts, valid_prompts = _prompt_texts(args, cls)
    fit_settings = {"max_epochs": args.epochs if args.epochs is not None else (20 if args.steps is None else None),
                    "max_steps": args.steps, "eval_every": args.eval_every, "keep": args.keep,
                    "monitor": args.monitor, "patience": args.patience}
    if prompts is not None and args.monitor is None:  # a prompted run's evaluation (training.prompt_evaluate)
        fit_settings["monitor"] = "valid_reward" if cls.requires.reward else "valid_kl_p_pi"
    policy_kwargs = model_settings(args) if model is not None else _policy_kwargs(args, task_cls, prompts)
    return TrainPlan(cls, task_cls, task_kwargs, settings, args.policy, policy_kwargs, out, fit_settings, prompts,
                     valid_prompts, model)


def _prompt_texts(args: argparse.Namespace, cls: Any) -> tuple[list[str] | None, list[str] | None]:
    """``--prompts`` and ``--valid-prompts`` read (not yet tokenized: that needs the policy's vocabulary)."""
    from ..prompts import read_prompt_texts

    if args.prompts is None:
        if cls.requires.prompts:
            raise UsageError(f"{cls.name} trains one target per prompt: give --prompts FILE")
        if args.valid_prompts is not None:
            raise UsageError("--valid-prompts evaluates a prompted run: give --prompts FILE too")
        return None, None
    if args.keep == "best" and args.valid_prompts is None:
        raise UsageError("--keep best ranks evaluations, which a prompted run makes on --valid-prompts: give them")
    if cls.uses_data and not cls.learns_from_prompts:
        raise UsageError(f"--prompts: {cls.name} learns from the task's references; prompts are for the algorithms "
                         "that draw their own samples (kl_control, dpg, gdcpp, fdpg, cdpg, …) and reinforce")
    return (with_option("--prompts", lambda: read_prompt_texts(args.prompts, "--prompts")),
            with_option("--valid-prompts", lambda: read_prompt_texts(args.valid_prompts, "--valid-prompts"))
            if args.valid_prompts is not None else None)


def _check_resume(args: argparse.Namespace, out: Path | None) -> None:
    if not args.resume:
        return
    if out is None:
        raise UsageError("--resume needs --out DIR (the run's state is DIR/state.pt)")
    if not (out / "state.pt").is_file():
        raise UsageError(f"--resume: no training state in {args.out!r} (expected {out / 'state.pt'})")


def _algorithm_settings(args: argparse.Namespace, cls: Any) -> dict[str, Any]:
    """``--set``, ``--reward``, ``--lr`` and ``--batch-size`` as the algorithm's config fields, parsed by their
    annotations and checked by building the config now."""
    from ..algorithms import config_fields
    from ..config import parse_text
    from ..rewards import REWARDS

    texts = split_sets(args.set, "--set")
    own = config_fields(cls)
    unknown = sorted(k for k in texts if k not in own)
    if unknown:
        raise UsageError(f"--set: {cls.name} has no config fields {unknown}; known: {sorted(own)}")
    if args.reward is not None:
        if "reward" not in own:
            hint = " (it trains toward a potential: use --potential)" if cls.requires.potential else ""
            raise UsageError(f"--reward: {cls.name} takes no reward{hint}")
        if "reward" in texts:
            raise UsageError("give the reward once: --reward NAME or --set reward=NAME")
        texts["reward"] = args.reward
    if "reward" in texts:
        REWARDS.get(texts["reward"])  # a missing plug-in fails now
    _check_target_options(args, cls)
    settings = {k: parse_text(f"--set {k}", v, field_type(cls, k)) for k, v in texts.items()}
    if args.lr is not None:
        settings["lr"] = args.lr
    if args.batch_size is not None:
        batch = "batch_size" if "batch_size" in own else "samples_per_step" if "samples_per_step" in own else None
        if batch is None:
            raise UsageError(f"--batch-size: {cls.name} has no batch setting")
        if batch in settings:
            raise UsageError(f"give {cls.name}'s batch once: --batch-size N or --set {batch}=N")
        settings[batch] = args.batch_size
    with_option("--set", lambda: cls.Config(**settings))
    return settings


def _check_target_options(args: argparse.Namespace, cls: Any) -> None:
    for option, value in (("--potential", args.potential), ("--scorer", args.scorer)):
        if value is not None and not cls.requires.potential:
            raise UsageError(f"{option}: {cls.name} takes no potential (it does not train toward an EBM)")
    if args.potential is not None and args.scorer is not None:
        raise UsageError("give the target once: --potential (log P itself) or --scorer (P = a·b)")


def _policy_kwargs(args: argparse.Namespace, task_cls: Any, prompts: list[str] | None) -> dict[str, Any]:
    from ..config import parse_settings
    from ..policies import POLICIES
    from ..policies.base import SAMPLING_KEYS, SamplingOptions

    if args.init is not None:
        return {}
    name = args.policy or _default_policy(task_cls, prompts is not None)
    cls = POLICIES.get(name)
    if prompts is not None and not (cls.is_conditional or getattr(cls, "accepts_prompts", False)):
        raise UsageError(f"--prompts: policy {name!r} reads no prompts; use --policy seq2seq (the prompt as its "
                         "source) or an HF model")
    texts = split_sets(args.policy_set, "--policy-set")
    sampling = {k: texts.pop(k) for k in SAMPLING_KEYS if k in texts}  # every policy takes them (make_policy)
    return {**parse_settings(texts, cls, "--policy-set"),
            **parse_settings(sampling, SamplingOptions, "--policy-set")}


def _default_policy(task_cls: Any, prompted: bool) -> str:
    return "seq2seq" if prompted or _conditional(task_cls) else "lstm"


def _conditional(task_cls: Any) -> bool:
    from ..envs.tasks import PairTask

    return isinstance(task_cls, type) and issubclass(task_cls, PairTask)


def build_policy(args: argparse.Namespace, plan_: TrainPlan, task: Any) -> Any:
    """The starting policy: the model of ``--model``/``--init DIR``; ``--init``'s (its vocabulary must be the
    task's); else a new one."""
    from ..checkpoint import load_checkpoint
    from ..policies import make_policy

    if plan_.model is not None:
        return load_model(plan_.model, plan_.policy_kwargs).train()
    if args.init is not None:
        policy = load_checkpoint(args.init).train()
        if list(policy.vocab.itos) != list(task.vocab.itos):
            raise UsageError(f"--init {args.init!r}: its vocabulary ({len(policy.vocab)} ids) is not the task's "
                             f"({len(task.vocab)} ids)")
        return policy
    name = plan_.policy_name or _default_policy(type(task), plan_.prompt_texts is not None)
    source_vocab = task.source_vocab or (task.vocab if plan_.prompt_texts is not None else None)  # prompts: symbols
    return with_option("--policy-set", lambda: make_policy(name, task.vocab, task.max_len, source_vocab=source_vocab,
                                                           **plan_.policy_kwargs))


def build_target(args: argparse.Namespace, cls: Any, task: Any, policy: Any) -> dict[str, Any]:
    """For an algorithm that trains toward a potential: the potential and its proposal (``--potential``, else the
    task's; on the motif task the GAM P_λ over r, r trained by MLE first unless ``--init`` gave it)."""
    import sys

    from ..ebm.base import make_potential
    from ..envs import MotifTask

    if not cls.requires.potential:
        return {}
    if args.scorer is not None:
        from ..ebm.base import ScoredBase
        from ..rewards import make_reward

        scorer = with_option("--scorer", lambda: make_reward(args.scorer, policy.vocab))
        return {"potential": ScoredBase(policy.frozen_copy().eval(), scorer, name=args.scorer), "proposal": policy}
    if args.potential is not None:
        return {"potential": make_potential(args.potential, policy.vocab), "proposal": policy}
    if args.prompts is not None:
        raise UsageError(f"{cls.name} trains toward a potential over prompts and completions: give --scorer "
                         "module:function (P = a·b) or --potential module:function (log P(x, y) itself)")
    if task is None:
        raise UsageError(f"{cls.name} trains toward a potential: give --scorer module:function (P = a·b, a the "
                         "model) or --potential module:function (log P itself)")
    if isinstance(task, MotifTask):
        from ..bench.gam import motif_target
        from ..utils import resolve_device

        potential, r = motif_target(task, policy, trained=args.init is not None, seed=args.seed,
                                    device=resolve_device(args.device), progress=progress(args) is True,
                                    echo=lambda line: print(f"seqrl train: {line}", file=sys.stderr))
        return {"potential": potential, "proposal": r}
    if callable(getattr(task, "potential", None)):
        return {"potential": task.potential(), "proposal": policy}
    raise UsageError(f"{cls.name} trains toward a potential and task {args.env!r} has none: give --potential NAME "
                     "or module:function, or --scorer")


def cmd_train(args: argparse.Namespace) -> int:
    from ..algorithms import Offer, make_algorithm
    from ..distributed import init_from_env
    from ..envs import task_for_env
    from ..files import locked
    from ..training import FitConfig, fit
    from ..utils import seed_everything

    plan_ = plan(args)
    set_threads(args.threads, workers=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun's processes here
    main = init_from_env(args.device).main  # under torchrun: join the run's processes; rank 0 writes
    seed_everything(args.seed)  # before the task's and the policy's random draws: same seed, same run
    if plan_.model is not None:
        quiet_transformers(progress(args) is True)
    task = None if plan_.model else with_option("--task-set", lambda: task_for_env(args.env, **plan_.task_kwargs))
    policy = build_policy(args, plan_, task)
    target = build_target(args, plan_.cls, task, policy)
    prompts, valid, evaluate = _prompt_sets(plan_, policy, task)
    data_task = task if prompts is None else None  # a prompted run samples; a task's data goes unused
    train = _training_data(plan_.cls, data_task, prompts, policy)
    offer = Offer(train=train, valid=data_task.split("valid") if data_task is not None else None,
                  epochs=plan_.fit["max_epochs"],
                  steps=plan_.fit["max_steps"], from_scratch=args.init is None and plan_.model is None,
                  prompts=prompts, **target)
    algorithm = with_option("--set", lambda: make_algorithm(plan_.cls, policy, offer, **plan_.settings))
    if prompts is not None and algorithm.uses_data and getattr(algorithm.reward, "needs_reference", True):
        raise UsageError(f"--prompts: {algorithm.name} on prompts has no references, and its reward "
                         f"{getattr(algorithm.reward, 'name', '')!r} needs them: give one that scores completions "
                         "alone (e.g. a function of completions=)")
    out = plan_.out
    config = FitConfig(**plan_.fit, device=args.device, seed=args.seed, progress=progress(args),
                       checkpoint=str(out / "policy.pt") if out and plan_.model is None else None,
                       state_path=str(out / "state.pt") if out else None,
                       log_dir=str(out) if out else None, tensorboard_dir=args.tensorboard)
    with locked(out if main else None):
        result = fit(algorithm, train, valid=valid, config=config, evaluate=evaluate,
                     resume_from=(out / "state.pt") if args.resume and out else None)
        if main:
            _write_outputs(args, plan_, algorithm, data_task, result)
    return 0


def _training_data(cls: Any, task: Any, prompts: Any, policy: Any) -> Any:
    """The task's training split; for a data algorithm on prompts (reinforce), the prompts as its rows."""
    from ..prompts import prompt_rows

    if task is not None:
        return task.split("train")
    if prompts is not None and cls.uses_data:
        return prompt_rows(prompts, policy.vocab)
    return None


def _write_outputs(args: argparse.Namespace, plan_: TrainPlan, algorithm: Any, task: Any, result: Any) -> None:
    """The report on stdout and, with ``--out``, in ``train.json``; a model run's kept weights in ``OUT/model``."""
    from ..files import atomic_write_text

    report = train_report(args, algorithm, task, result)
    if plan_.out and plan_.model is not None:
        report["model"] = str(save_model(algorithm.policy, plan_.out))
    print(json.dumps(report, indent=2))
    if plan_.out:
        atomic_write_text(plan_.out / "train.json", json.dumps({**report, "history": result.history}, indent=2),
                          "run report")


def _prompt_sets(plan_: TrainPlan, policy: Any, task: Any) -> tuple[Any, Any, Any]:
    """(training prompts, validation data, evaluation): a prompted run evaluates on its validation prompts (none
    without ``--valid-prompts``); others on the task's validation split."""
    from ..prompts import encode_prompts
    from ..training import prompt_evaluate

    if plan_.prompt_texts is None:
        return None, task.split("valid") if task is not None else None, None
    vocab = getattr(policy, "source_vocab", None) or policy.vocab
    prompts = with_option("--prompts", lambda: encode_prompts(plan_.prompt_texts or [], vocab, "--prompts"))
    if plan_.valid_prompt_texts is None:
        return prompts, None, None
    valid = with_option("--valid-prompts", lambda: encode_prompts(plan_.valid_prompt_texts or [], vocab,
                                                                  "--valid-prompts"))
    return prompts, None, prompt_evaluate(valid)


def train_report(args: argparse.Namespace, algorithm: Any, task: Any, result: Any) -> dict[str, Any]:
    """What the run did and what it left: which weights it kept (and why), its last evaluation, and, on a task's
    data (``task`` None for a prompted or a model run), the test split's CE, the reward for reward algorithms,
    and greedy BLEU for conditional tasks."""
    from ..metrics import corpus_bleu, cross_entropy, reward_score

    report: dict[str, Any] = {"algorithm": algorithm.name, "env": args.env, "seed": args.seed, "steps": result.steps,
                              "kept": result.kept, "kept_step": result.kept_step, "summary": result.describe(),
                              "monitor": result.monitor, "best": None if math.isnan(result.best) else result.best,
                              "final_evaluation": result.final, "wall_s": result.wall_s}
    if task is None:
        return report
    policy, test = algorithm.policy, task.split("test")
    report["test_ce"] = cross_entropy(policy, test)
    reward = getattr(algorithm, "reward", None)
    if reward is not None and (not getattr(reward, "needs_reference", True) or test.batch_size):
        report["test_reward"] = reward_score(reward, policy, test)
    if task.is_conditional:
        assert test.context is not None  # a conditional task's splits carry their sources
        hyps = policy.greedy(1, test.context.to(policy.device)).batch.to_strings(task.vocab)
        report["test_bleu_greedy"] = corpus_bleu(hyps, test.to_strings(task.vocab))
    return report


__all__ = ["add_parser", "cmd_train", "plan", "train_report"]
