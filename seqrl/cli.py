"""The ``seqrl`` command: ``list``, ``train``, ``bench``, ``report``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from .config import MAX_INT


class UsageError(ValueError):
    """A command line that names an option, value or path that cannot work; exits 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose own errors (a missing argument, an unknown option, a bad value) are the same one
    ``seqrl: error:`` line as every other usage error, not a usage block."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def _split_sets(items: list[str], option: str) -> dict[str, str]:
    """``["k=v", …]`` → ``{k: "v"}`` (texts: each is parsed by the type of the field it sets)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def _int_list(text: str | None, option: str, minimum: int = 0) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if any(v < minimum for v in values):
        kind = "non-negative" if minimum == 0 else f"≥ {minimum}"
        raise UsageError(f"{option}: expected {kind} integers, got {text!r}")
    if any(v > MAX_INT for v in values):
        raise UsageError(f"{option}: {text!r} holds an integer beyond 2**63 - 1")
    return values


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [v.strip() for v in text.split(",")]
    if not all(names):
        raise UsageError(f"{option}: an empty name in {text!r}")
    return names


def _out_dir(path: str | None, option: str = "--out") -> Path | None:
    """Check the output directory now (an existing writable folder, or one that can be created in a writable
    parent), so that a bad path fails before any training; nothing is created here: the run creates it when
    it first writes, so a command refused later writes nothing."""
    if path is None:
        return None
    if not path.strip():
        raise UsageError(f"{option} is empty: give a directory")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {path!r} is a file, not a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path!r}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path!r} is not writable" if existing == out else
                         f"{option} {path!r}: cannot create it ({existing} is not writable)")
    return out


def _progress(args: argparse.Namespace) -> bool | Literal["lines"]:
    """Bars on a terminal; elsewhere (a log, a scheduler) one plain line per evaluation or finished job
    (``"lines"``), so that a log shows the run is alive without 90 KB of carriage returns; ``--progress``
    forces bars, ``--no-progress`` silences both."""
    if args.no_progress:
        return False
    if args.progress or (sys.stdout.isatty() and sys.stderr.isatty()):
        return True
    return "lines"


def catalogue() -> dict[str, list[str]]:
    from .algorithms import ALGORITHMS
    from .bench import SUITES
    from .envs import ENV_IDS
    from .policies import POLICIES
    from .rewards import REWARDS

    return {
        "algorithms": ALGORITHMS.names(),
        "envs": list(ENV_IDS),
        "rewards": REWARDS.names(),
        "policies": POLICIES.names(),
        "suites": SUITES.names(),
    }


def algorithm_details() -> dict[str, dict[str, Any]]:
    """Per algorithm: its ERPO point ([ERPO] Eq. 1), where the papers give one, and what it requires."""
    from dataclasses import asdict

    from .algorithms import ALGORITHMS

    return {name: {"erpo_point": asdict(cls.erpo_point) if cls.erpo_point else None,
                   "requires": asdict(cls.requires), "summary": (cls.__doc__ or "").strip().split("\n")[0]}
            for name, cls in ALGORITHMS.items()}


def cmd_list(args: argparse.Namespace) -> int:
    cat = catalogue()
    details = algorithm_details()
    if args.json:
        print(json.dumps({**cat, "algorithm_details": details}, indent=2))
        return 0
    for key, names in cat.items():
        print(f"{key}: {', '.join(names)}")
    from .algorithms import ALGORITHMS

    print("\nERPO points (R, α, β) of [ERPO] Eq. 1:")
    for name, cls in ALGORITHMS.items():
        if cls.erpo_point is not None:
            print(f"  {name}: {cls.erpo_point}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .algorithms import ALGORITHMS, make_algorithm
    from .algorithms.base import config_fields
    from .config import parse_settings, parse_text
    from .envs import ENV_IDS, task_for_env
    from .envs.tasks import TASKS
    from .files import atomic_write_text, locked
    from .metrics import corpus_bleu, cross_entropy
    from .policies import POLICIES, make_policy
    from .training import FitConfig, fit
    from .utils import seed_everything

    # Everything is checked before anything is built, trained or written.
    cls = ALGORITHMS.get(args.algorithm)
    task_cls = TASKS.get(ENV_IDS.get(args.env, args.env)) if (args.env in ENV_IDS or args.env in TASKS) else None
    if task_cls is None:
        task_for_env(args.env)  # raises, listing the known environments
    out = _out_dir(args.out)
    _tensorboard_dir(args.tensorboard)
    if args.resume:
        if out is None:
            raise UsageError("--resume needs --out DIR (the run's state is DIR/state.pt)")
        if not (out / "state.pt").is_file():
            raise UsageError(f"--resume: no training state in {args.out!r} (expected {out / 'state.pt'})")
    task_kwargs = parse_settings(_split_sets(args.task_set, "--task-set"), task_cls, "--task-set")
    algo_texts = _split_sets(args.set, "--set")
    own = config_fields(cls)
    unknown = sorted(k for k in algo_texts if k not in own)
    if unknown:
        raise UsageError(f"--set: {args.algorithm} has no config fields {unknown}; known: {sorted(own)}")
    _plugin_options(args, cls, algo_texts)
    algo_kwargs = {k: parse_text(f"--set {k}", v, _field_type(cls, k)) for k, v in algo_texts.items()}
    _with_option("--set", lambda: _check_algorithm_config(cls, algo_kwargs))
    seed_everything(args.seed)  # before the task's and the policy's random draws: same seed, same run
    task = _with_option("--task-set", lambda: task_for_env(args.env, **task_kwargs))
    ctor_kwargs = _potential_kwargs(args, cls, task)
    policy_name = args.policy or ("seq2seq" if task.is_conditional else "lstm")
    policy_kwargs = parse_settings(_split_sets(args.policy_set, "--policy-set"), POLICIES.get(policy_name),
                                   "--policy-set")
    config = FitConfig(max_epochs=args.epochs, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       patience=args.patience, device=args.device, seed=args.seed, progress=_progress(args),
                       checkpoint=str(out / "policy.pt") if out else None,
                       state_path=str(out / "state.pt") if out else None,
                       log_dir=str(out) if out else None, tensorboard_dir=args.tensorboard)
    policy = _with_option("--policy-set", lambda: make_policy(policy_name, task.vocab, task.max_len,
                                                              source_vocab=task.source_vocab, **policy_kwargs))
    algorithm = make_algorithm(args.algorithm, policy, **algo_kwargs, **ctor_kwargs)
    with locked(out):
        result = fit(algorithm, task.split("train"), valid=task.split("valid"), config=config,
                     resume_from=(out / "state.pt") if args.resume and out else None)
        test = task.split("test")
        report = {"algorithm": args.algorithm, "env": args.env, "seed": args.seed, "steps": result.steps,
                  "best_valid_ce": result.best, "test_ce": cross_entropy(policy, test), "wall_s": result.wall_s}
        if task.is_conditional:
            assert test.context is not None  # a conditional task's splits carry their sources
            hyps = policy.greedy(1, test.context.to(policy.device)).batch.to_strings(task.vocab)
            report["test_bleu_greedy"] = corpus_bleu(hyps, test.to_strings(task.vocab))
        print(json.dumps(report, indent=2))
        if out:
            atomic_write_text(out / "train.json", json.dumps({**report, "history": result.history}, indent=2),
                              "run report")
    return 0


def _with_option(option: str, build: Callable[[], Any]) -> Any:
    """``build()``, with a ValueError/TypeError it raises about the values ``option`` gave prefixed by the option's
    name (a size above its limit, a value out of range), so that the one error line says what to change."""
    try:
        return build()
    except (ValueError, TypeError) as err:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        raise UsageError(text if text.startswith(option) else f"{option}: {text}") from None


def _check_algorithm_config(cls: Any, values: dict[str, Any]) -> None:
    """The algorithm's config built from ``--set`` values now (types, finiteness, ranges), before any data."""
    from .algorithms.base import config_from_kwargs

    config_from_kwargs(cls, **values)


def _plugin_options(args: argparse.Namespace, cls: Any, algo_texts: dict[str, str]) -> None:
    """``--reward NAME`` (a registered name or ``module:function``) sets the algorithm's ``reward``;
    the reward is looked up now, so that a missing plug-in fails before anything is built."""
    from .algorithms.base import config_fields
    from .rewards import REWARDS

    if args.reward is not None:
        if "reward" not in config_fields(cls):
            hint = " (it trains toward a potential: use --potential)" if cls.requires.potential else ""
            raise UsageError(f"--reward: {cls.name} takes no reward{hint}")
        if "reward" in algo_texts:
            raise UsageError("give the reward once: --reward NAME or --set reward=NAME")
        algo_texts["reward"] = args.reward
    if "reward" in algo_texts:
        REWARDS.get(algo_texts["reward"])
    if args.potential is not None and not cls.requires.potential:
        raise UsageError(f"--potential: {cls.name} takes no potential (it does not train toward an EBM)")


def _potential_kwargs(args: argparse.Namespace, cls: Any, task: Any) -> dict[str, Any]:
    """The potential (``--potential NAME`` or ``module:function``, else the task's own) and the
    validation data for an algorithm that trains toward a potential; nothing for the others."""
    import inspect

    from .ebm.base import make_potential

    if not cls.requires.potential:
        return {}
    if args.potential is not None:
        potential = make_potential(args.potential, task.vocab)
    elif callable(getattr(task, "potential", None)):
        potential = task.potential()
    else:
        raise UsageError(f"{cls.name} trains toward a potential and task {args.env!r} has none: "
                         "give --potential NAME or module:function")
    kwargs: dict[str, Any] = {"potential": potential}
    if "valid" in inspect.signature(cls.__init__).parameters:
        kwargs["valid"] = task.split("valid")
    return kwargs


def _tensorboard_dir(path: str | None) -> None:
    """``--tensorboard DIR``: the package present and the folder writable, before any training."""
    if path is None:
        return
    from .tracking import require_tensorboard

    try:
        require_tensorboard()
    except ImportError as err:
        raise UsageError(f"--tensorboard: {err}") from None
    _out_dir(path, "--tensorboard")


def _executor(args: argparse.Namespace) -> Any:
    """The executor of ``--workers`` / ``--ray`` / ``--gpus-per-run`` / ``--cpus-per-run``."""
    from .bench.executors import RAY_HINT, make_executor

    use_ray = args.ray is not None
    if not use_ray and args.cpus_per_run is not None:
        raise UsageError("--cpus-per-run applies to --ray only (--workers shares the cores out itself)")
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError(RAY_HINT) from None
    try:
        return make_executor(workers=args.workers, ray=use_ray, ray_address=args.ray or None,
                             cpus_per_run=args.cpus_per_run or 1.0, gpus_per_run=args.gpus_per_run)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_report(args: argparse.Namespace) -> int:
    from .bench.report import rebuild_report

    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"report: {args.dir!r} is not a directory")
    rebuild_report(folder, out=_out_dir(args.out) if args.out else None)
    return 0


def _field_type(cls: Any, name: str) -> Any:
    from .config import field_types

    return field_types(cls.Config)[name]


def cmd_bench(args: argparse.Namespace) -> int:
    from .algorithms import ALGORITHMS
    from .bench import SUITES, run_suite
    from .bench.runner import BenchInterrupted
    from .bench.suite import override_settings, split_algorithm_settings
    from .config import SettingError, field_types, parse_settings, parse_text
    from .training import FitConfig

    suite = SUITES.get(args.suite)()
    seeds = _int_list(args.seeds, "--seeds")
    algos = _names(args.algos, "--algos")
    grid: dict[str, Sequence[str]] = {}
    for key in ("sizes", "motifs", "masks", "data"):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in suite.grid_options:
            raise UsageError(f"--{key} does not apply to suite {args.suite!r} (it takes: "
                             f"{', '.join('--' + o for o in suite.grid_options) or 'none'})")
        grid[key] = _names(value, f"--{key}") or []
    if "sizes" in grid:
        grid["sizes"] = [str(v) for v in _int_list(args.sizes, "--sizes", minimum=1) or []]
    if "data" in grid:
        if len(grid["data"]) != 1:
            raise UsageError(f"--data takes one file, got {len(grid['data'])}: {args.data!r}")
        if not Path(grid["data"][0]).is_file():
            raise UsageError(f"--data {grid['data'][0]!r}: no such file")
    texts = _split_sets(args.set, "--set")
    if args.reward is not None:  # the suite's reward: a registered name or module:function
        if suite.settings_class is None or "reward" not in field_types(suite.settings_class):
            raise UsageError(f"--reward does not apply to suite {args.suite!r} (it sets no reward)")
        if "reward" in texts:
            raise UsageError("give the reward once: --reward NAME or --set reward=NAME")
        texts["reward"] = args.reward
    plain = {k: v for k, v in texts.items() if "." not in k}
    settings: dict[str, Any] = {}
    if suite.settings_class is not None:
        settings.update(parse_settings(plain, suite.settings_class, "--set"))
    elif plain:
        raise UsageError(f"--set: suite {args.suite!r} has no settings; got {sorted(plain)}")
    fit_types = field_types(FitConfig)
    for key, text in texts.items():
        if "." not in key:
            continue
        algo, name = key.split(".", 1)
        cls = ALGORITHMS.get(algo)
        config_cls = getattr(cls, "Config", None)
        types = {**fit_types, **field_types(config_cls)} if config_cls else fit_types
        if name not in types:
            raise UsageError(f"--set {key}: {algo} has no setting {name!r}; known: {sorted(types)}")
        settings[key] = parse_text(f"--set {key}", text, types[name])
    if args.ablation:
        if suite.settings_class is None or "ablation" not in field_types(suite.settings_class):
            raise UsageError(f"--ablation does not apply to suite {args.suite!r}")
        if algos:
            raise UsageError("--ablation chooses its own rows: drop --algos")
        settings["ablation"] = True
    try:  # values and ranges checked now: nothing is written or trained first
        plain_settings, _ = split_algorithm_settings(settings, suite.available_algos())
        if suite.settings_class is not None:
            override_settings(suite.settings_class(), plain_settings)
    except SettingError as err:
        raise UsageError(str(err) if str(err).startswith("--set") or err.key is None
                         else f"--set {err.key}: {err}") from None
    executor = _executor(args)
    _tensorboard_dir(args.tensorboard)
    out = _out_dir(args.out)
    try:
        run_suite(args.suite, quick=args.quick, seeds=seeds, algos=algos, device=args.device, out=out,
                  progress=_progress(args), grid=grid, settings=settings, resume=args.resume, executor=executor,
                  tensorboard=args.tensorboard)
    except BenchInterrupted as err:  # the finished jobs are saved: one line, no traceback
        print(f"seqrl: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def build_parser() -> argparse.ArgumentParser:
    cat = catalogue()

    def choices(key: str) -> str:
        return ", ".join(cat[key])

    parser = _Parser(
        prog="seqrl", description="Training algorithms for sequence generators, side by side.",
        epilog=f"algorithms: {choices('algorithms')}. suites: {choices('suites')}. environments: {choices('envs')}. "
               f"policies: {choices('policies')}. rewards: {choices('rewards')}.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="show algorithms, environments, rewards, policies and suites")
    p.add_argument("--json", action="store_true", help="print JSON (with each algorithm's ERPO point and needs)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train one algorithm on one environment's task",
                       epilog=f"algorithms: {choices('algorithms')}. environments: {choices('envs')}. "
                              f"policies: {choices('policies')}. rewards (for --set reward=…): {choices('rewards')}.")
    p.add_argument("algorithm", help=f"one of: {choices('algorithms')}")
    p.add_argument("--env", required=True, help=f"environment id: {choices('envs')}")
    p.add_argument("--policy", help=f"policy (default: lstm, or seq2seq for conditional tasks): {choices('policies')}")
    p.add_argument("--epochs", type=_positive, default=20, help="passes over the training data (≥ 1; default 20)")
    p.add_argument("--steps", type=_positive, default=None, help="optimizer steps (≥ 1; caps --epochs)")
    p.add_argument("--batch-size", type=_positive, default=64, help="sequences per minibatch (default 64)")
    p.add_argument("--lr", type=_non_negative_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--patience", type=_positive, default=None,
                   help="evaluations without improvement of validation CE before stopping (default: never)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=_non_negative, default=0, help="seeds the data, the policy and training")
    p.add_argument("--out", help="directory for policy.pt, train.json, metrics.csv (every step) and the resumable "
                                 "state.pt")
    p.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard events to DIR "
                                                        "(needs seqrl[tensorboard])")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out (state.pt)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the algorithm's config (see `seqrl list --json`), e.g. --set reward=hamming")
    p.add_argument("--task-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument of the environment's task, e.g. --task-set train_size=500")
    p.add_argument("--policy-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument of the policy, e.g. --policy-set hidden_size=32")
    p.add_argument("--reward", metavar="NAME",
                   help="the algorithm's reward: a registered name or module:function (a plug-in; the module is "
                        "imported from sys.path or the current directory)")
    p.add_argument("--potential", metavar="NAME",
                   help="the EBM for dpg/gdcpp/…: a registered name or module:function giving log P(x) "
                        "(default: the task's own, e.g. the motif task's)")
    _progress_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="run a benchmark suite and write results.json/csv and plots",
                       epilog=f"suites: {choices('suites')}. algorithms: {choices('algorithms')} (each suite runs "
                              "those whose requirements it meets).")
    p.add_argument("suite", help=f"one of: {choices('suites')}")
    p.add_argument("--quick", action="store_true", help="a reduced grid that runs in minutes on a CPU")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--seeds", help="comma-separated seeds (non-negative integers)")
    p.add_argument("--algos", help="comma-separated algorithms (default: the suite's default rows)")
    p.add_argument("--out", default="runs/bench", help="output directory (default runs/bench)")
    p.add_argument("--sizes", help="gam: comma-separated |D| values (overrides the grid's)")
    p.add_argument("--motifs", help="gam: comma-separated motifs")
    p.add_argument("--masks", help="gam: comma-separated feature masks, e.g. 1001111,Mv1001111")
    p.add_argument("--data", help="seq2seq: one TSV file of source<TAB>target pairs instead of the toy task")
    p.add_argument("--ablation", action="store_true",
                   help="seq2seq: ERAC's ablations (Tables 3-4: β × λ_var, no future entropy) beside mle and ac")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a suite setting (a GamSettings / Seq2SeqSettings / ControlSettings field), "
                        "e.g. --set dpg_lr=3e-3; or "
                        "ALGO.FIELD=VALUE for one algorithm's config or FitConfig field, e.g. --set raml.num_samples=5")
    p.add_argument("--resume", action="store_true",
                   help="finish the interrupted run in --out (same grid): its finished jobs are read back, not rerun")
    p.add_argument("--reward", metavar="NAME",
                   help="seq2seq: the suite's reward, a registered name or module:function (same as --set reward=)")
    p.add_argument("--workers", type=_positive, default=None, metavar="N",
                   help="run the grid's jobs in N local worker processes (default: one after another here)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run each job as a Ray task (needs seqrl[ray]): on the cluster at ADDRESS (e.g. auto, "
                        "HOST:6379, ray://HOST:10001), or without ADDRESS on a running local one or a new one")
    p.add_argument("--gpus-per-run", type=_non_negative_float, default=0.0, metavar="G",
                   help="with --ray: GPUs per job, a fraction shares one (0.25: four jobs per GPU); default 0")
    p.add_argument("--cpus-per-run", type=_positive_float, default=None, metavar="C",
                   help="with --ray: CPUs per job (and torch threads); default 1")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard events of every training run to DIR/JOB/NN-ALGORITHM "
                        "(needs seqrl[tensorboard]); metrics.csv goes to OUT/logs/JOB/NN-ALGORITHM always")
    _progress_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="rebuild a bench run's tables and plots from DIR/results.json (no training)")
    p.add_argument("dir", help="output folder of `seqrl bench` (holding results.json)")
    p.add_argument("--out", help="write report.txt and the plots here instead of DIR")
    p.set_defaults(func=cmd_report)
    return parser


def _progress_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    group.add_argument("--no-progress", action="store_true", help="never show progress bars")


def _at_least(kind: type, minimum: float, what: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that reads ``kind`` and requires it ≥ ``minimum`` (and finite, and within 64 bits
    for integers), naming both on failure."""

    def read(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value >= minimum:
            raise argparse.ArgumentTypeError(f"expected {what} ≥ {minimum:g}, got {text!r}")
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if kind is int and value > MAX_INT:
            raise argparse.ArgumentTypeError(f"{text} is beyond the integer range (2**63 - 1)")
        return value

    return read


_positive = _at_least(int, 1, "an integer")
_non_negative = _at_least(int, 0, "an integer")
_non_negative_float = _at_least(float, 0, "a number")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Usage errors exit 2 with one ``seqrl: error:`` line; Ctrl-C exits 130 and SIGTERM 143, each with one
    line, after the run saved what it had (:mod:`seqrl.interrupts`)."""
    from .files import DiskFullError, LockedError
    from .interrupts import signal_of, terminate_as_interrupt
    from .training import TrainingInterrupted

    terminate_as_interrupt()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return args.func(args)
    except TrainingInterrupted as err:
        print(f"seqrl: {err.args[0]}; rerun with --resume" if err.saved else f"seqrl: {err.args[0]}",
              file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        signum = signal_of(err)
        print("seqrl: interrupted" if signum == 2 else "seqrl: terminated", file=sys.stderr)
        return 128 + signum
    except (DiskFullError, LockedError) as err:
        print(f"seqrl: error: {err.strerror if isinstance(err, OSError) and err.strerror else err}",
              file=sys.stderr)
        return 2
    except (KeyError, ValueError, TypeError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"seqrl: error: {_one_line(message)}", file=sys.stderr)
        return 2


def _one_line(message: Any) -> str:
    lines = str(message).strip().splitlines()
    return lines[0] if lines else type(message).__name__


if __name__ == "__main__":
    sys.exit(main())
