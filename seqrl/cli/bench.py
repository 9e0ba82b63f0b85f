"""``seqrl bench SUITE``: a suite's grid, every option checked before anything is written, run in this process,
in worker processes or on Ray."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .common import (
    UsageError,
    int_list,
    names,
    non_negative_float,
    out_dir,
    positive,
    positive_float,
    progress,
    progress_options,
    set_threads,
    split_sets,
    tensorboard_dir,
)


def add_parser(sub: Any, choices: Callable[[str], str]) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite and write results.json/csv and plots",
                       epilog=f"suites: {choices('suites')}. algorithms: {choices('algorithms')} (each suite runs "
                              "those whose requirements it meets; module:Class for your own).")
    p.add_argument("suite", help=f"one of: {choices('suites')}")
    p.add_argument("--quick", action="store_true", help="a reduced grid that runs in minutes on a CPU")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--seeds", help="comma-separated seeds (non-negative integers)")
    p.add_argument("--algos", help="comma-separated algorithms (default: the suite's default rows); module:Class too")
    p.add_argument("--out", default="runs/bench", help="output directory (default runs/bench)")
    p.add_argument("--sizes", help="gam: comma-separated |D| values (overrides the grid's)")
    p.add_argument("--motifs", help="gam: comma-separated motifs")
    p.add_argument("--masks", help="gam: comma-separated feature masks, e.g. 1001111,Mv1001111")
    p.add_argument("--data", help="seq2seq: one TSV file of source<TAB>target pairs instead of the toy task")
    p.add_argument("--preset", metavar="NAME",
                   help="seq2seq: a paper's table with its rows and protocol (erpo-table1, critics-table1); the same "
                        "as --set preset=NAME, beneath any other --set")
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
    p.add_argument("--workers", type=positive, default=None, metavar="N",
                   help="run the grid's jobs in N local worker processes (default: one after another here); "
                        "workers × threads may not exceed the cores")
    p.add_argument("--threads", type=positive, default=None,
                   help="torch CPU threads per process (default 1, measured fastest for these models)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run each job as a Ray task (needs seqrl[ray]): on the cluster at ADDRESS (e.g. auto, "
                        "HOST:6379, ray://HOST:10001), or without ADDRESS on a running local one or a new one")
    p.add_argument("--gpus-per-run", type=non_negative_float, default=0.0, metavar="G",
                   help="with --ray: GPUs per job, a fraction shares one (0.25: four jobs per GPU); default 0")
    p.add_argument("--cpus-per-run", type=positive_float, default=None, metavar="C",
                   help="with --ray: CPUs per job (and torch threads); default 1")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard events of every training run to DIR/JOB/NN-ALGORITHM "
                        "(needs seqrl[tensorboard]); metrics.csv goes to OUT/logs/JOB/NN-ALGORITHM always")
    progress_options(p)
    p.set_defaults(func=cmd_bench)


def _grid(args: argparse.Namespace, suite: Any) -> dict[str, Sequence[str]]:
    """``--sizes/--motifs/--masks/--data``, each checked against what the suite takes."""
    grid: dict[str, Sequence[str]] = {}
    for key in ("sizes", "motifs", "masks", "data"):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in suite.grid_options:
            raise UsageError(f"--{key} does not apply to suite {args.suite!r} (it takes: "
                             f"{', '.join('--' + o for o in suite.grid_options) or 'none'})")
        grid[key] = names(value, f"--{key}") or []
    if "sizes" in grid:
        grid["sizes"] = [str(v) for v in int_list(args.sizes, "--sizes", minimum=1) or []]
    if "data" in grid:
        if len(grid["data"]) != 1:
            raise UsageError(f"--data takes one file, got {len(grid['data'])}: {args.data!r}")
        if not Path(grid["data"][0]).is_file():
            raise UsageError(f"--data {grid['data'][0]!r}: no such file")
    return grid


def _settings(args: argparse.Namespace, suite: Any) -> dict[str, Any]:
    """``--set`` (suite fields, and ``ALGO.FIELD`` for one algorithm's config or FitConfig), ``--reward`` and
    ``--ablation``, parsed by their annotations and checked by building what they set."""
    from ..config import SettingError, field_types, parse_settings
    from ..training import FitConfig
    from .common import field_type

    texts = split_sets(args.set, "--set")
    _named_settings(args, suite, texts)
    plain = {k: v for k, v in texts.items() if "." not in k}
    if plain and suite.settings_class is None:
        raise UsageError(f"--set: suite {args.suite!r} has no settings; got {sorted(plain)}")
    settings: dict[str, Any] = parse_settings(plain, suite.settings_class, "--set") if plain else {}
    for key, text in texts.items():
        if "." in key:
            settings[key] = _algorithm_setting(key, text, field_types(FitConfig), field_type)
    if args.ablation:
        if suite.settings_class is None or "ablation" not in field_types(suite.settings_class):
            raise UsageError(f"--ablation does not apply to suite {args.suite!r}")
        if args.algos:
            raise UsageError("--ablation chooses its own rows: drop --algos")
        settings["ablation"] = True
    try:  # values and ranges checked now: nothing is written or trained first
        from ..bench.suite import override_settings, split_algorithm_settings

        plain_settings, _ = split_algorithm_settings(settings, suite.available_algos())
        if suite.settings_class is not None:
            override_settings(suite.settings_class(), plain_settings)
    except SettingError as err:
        raise UsageError(str(err) if str(err).startswith("--set") or err.key is None
                         else f"--set {err.key}: {err}") from None
    return settings


def _named_settings(args: argparse.Namespace, suite: Any, texts: dict[str, str]) -> None:
    """``--reward NAME`` and ``--preset NAME`` into ``texts``: the same as ``--set reward=NAME`` / ``preset=NAME``."""
    from ..config import field_types

    for option in ("reward", "preset"):
        value = getattr(args, option)
        if value is None:
            continue
        if suite.settings_class is None or option not in field_types(suite.settings_class):
            raise UsageError(f"--{option} does not apply to suite {args.suite!r}")
        if option in texts:
            raise UsageError(f"give the {option} once: --{option} NAME or --set {option}=NAME")
        texts[option] = value


def _algorithm_setting(key: str, text: str, fit_types: dict[str, Any], field_type: Any) -> Any:
    """``--set ALGO.FIELD=VALUE``: parsed by the field's annotation (the algorithm's config, or FitConfig)."""
    from ..algorithms import config_fields, resolve_algorithm
    from ..config import parse_text

    algo, name = key.rsplit(".", 1)
    cls = resolve_algorithm(algo)
    if name in config_fields(cls):
        return parse_text(f"--set {key}", text, field_type(cls, name))
    if name in fit_types:
        return parse_text(f"--set {key}", text, fit_types[name])
    known = sorted(config_fields(cls) | set(fit_types))
    raise UsageError(f"--set {key}: {algo} has no setting {name!r}; known: {known}")


def executor(args: argparse.Namespace) -> Any:
    """The executor of ``--workers`` / ``--threads`` / ``--ray`` / ``--gpus-per-run`` / ``--cpus-per-run``."""
    from ..bench.executors import RAY_HINT, make_executor

    use_ray = args.ray is not None
    if not use_ray and args.cpus_per_run is not None:
        raise UsageError("--cpus-per-run applies to --ray only (--workers shares the cores out itself)")
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError(RAY_HINT) from None
    workers = args.workers or 1
    threads = set_threads(args.threads, workers if not use_ray else 1)
    try:
        return make_executor(workers=args.workers, ray=use_ray, ray_address=args.ray or None,
                             cpus_per_run=args.cpus_per_run or 1.0, gpus_per_run=args.gpus_per_run, threads=threads)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import SUITES, run_suite
    from ..bench.runner import BenchInterrupted

    suite = SUITES.get(args.suite)()
    seeds = int_list(args.seeds, "--seeds")
    algos = names(args.algos, "--algos")
    grid = _grid(args, suite)
    settings = _settings(args, suite)
    run_executor = executor(args)
    tensorboard_dir(args.tensorboard)
    out = out_dir(args.out)
    try:
        run_suite(args.suite, quick=args.quick, seeds=seeds, algos=algos, device=args.device, out=out,
                  progress=progress(args), grid=grid, settings=settings, resume=args.resume, executor=run_executor,
                  tensorboard=args.tensorboard)
    except BenchInterrupted as err:  # the finished jobs are saved: one line, no traceback
        print(f"seqrl: {err}", file=sys.stderr)
        return err.exit_code
    return 0


__all__ = ["add_parser", "cmd_bench", "executor"]
