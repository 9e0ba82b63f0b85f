"""The ``seqrl`` command: ``list``, ``train``, ``bench``, ``report``.

Every command checks its whole command line before it builds, trains or writes anything; a usage error is one
``seqrl: error:`` line and exit 2; Ctrl-C exits 130 and SIGTERM 143, each with one line, after the run saved what
it had (:mod:`seqrl.interrupts`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from . import bench as _bench
from . import train as _train
from .common import Parser, UsageError, out_dir


def catalogue() -> dict[str, list[str]]:
    from ..algorithms import ALGORITHMS
    from ..bench import SUITES
    from ..envs import ENV_IDS
    from ..policies import POLICIES
    from ..rewards import REWARDS

    return {
        "algorithms": ALGORITHMS.names(),
        "envs": list(ENV_IDS),
        "rewards": REWARDS.names(),
        "policies": POLICIES.names(),
        "suites": SUITES.names(),
    }


def config_schema(cls: Any) -> dict[str, dict[str, Any]]:
    """Each field of an algorithm's Config: its type, default and one-line description (what ``--set`` takes)."""
    from ..config import describe, field_docs, field_types

    types, docs = field_types(cls.Config), field_docs(cls.Config)
    schema = {}
    for f in dataclasses.fields(cls.Config):
        default = f.default if f.default is not dataclasses.MISSING else None
        schema[f.name] = {"type": describe(types[f.name]), "default": default, "doc": docs.get(f.name, "")}
    return schema


def algorithm_details() -> dict[str, dict[str, Any]]:
    """Per algorithm: a one-line summary, its ERPO point ([ERPO] Eq. 1) where the papers give one, what it requires,
    and its config fields."""
    from ..algorithms import ALGORITHMS

    out = {}
    for name, cls in ALGORITHMS.items():
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        out[name] = {"summary": doc, "erpo_point": dataclasses.asdict(cls.erpo_point) if cls.erpo_point else None,
                     "requires": dataclasses.asdict(cls.requires), "samples_itself": not cls.uses_data,
                     "config": config_schema(cls)}
    return out


def cmd_list(args: argparse.Namespace) -> int:
    cat = catalogue()
    details = algorithm_details()
    if args.json:
        print(json.dumps({**cat, "algorithm_details": details}, indent=2, default=repr))
        return 0
    for key, found in cat.items():
        print(f"{key}: {', '.join(found)}")
    print("\nalgorithms:")
    for name, info in details.items():
        print(f"  {name}: {info['summary']}")
    from ..algorithms import ALGORITHMS

    print("\nERPO points (R, α, β) of [ERPO] Eq. 1:")
    for name, cls in ALGORITHMS.items():
        if cls.erpo_point is not None:
            print(f"  {name}: {cls.erpo_point}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..bench.report import rebuild_report

    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"report: {args.dir!r} is not a directory")
    rebuild_report(folder, out=out_dir(args.out) if args.out else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    cat = catalogue()

    def choices(key: str) -> str:
        return ", ".join(cat[key])

    parser = Parser(
        prog="seqrl", description="Training algorithms for sequence generators, side by side.",
        epilog=f"algorithms: {choices('algorithms')}. suites: {choices('suites')}. environments: {choices('envs')}. "
               f"policies: {choices('policies')}. rewards: {choices('rewards')}.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="show algorithms, environments, rewards, policies and suites")
    p.add_argument("--json", action="store_true",
                   help="print JSON (with each algorithm's summary, ERPO point, needs and config fields)")
    p.set_defaults(func=cmd_list)
    _train.add_parser(sub, choices)
    _bench.add_parser(sub, choices)
    p = sub.add_parser("report", help="rebuild a bench run's tables and plots from DIR/results.json (no training)")
    p.add_argument("dir", help="output folder of `seqrl bench` (holding results.json)")
    p.add_argument("--out", help="write report.txt and the plots here instead of DIR")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Usage errors exit 2 with one ``seqrl: error:`` line; Ctrl-C exits 130 and SIGTERM 143, each with one
    line, after the run saved what it had (:mod:`seqrl.interrupts`)."""
    from ..files import DiskFullError, LockedError
    from ..interrupts import signal_of, terminate_as_interrupt
    from ..training import TrainingInterrupted

    terminate_as_interrupt()
    try:
        args = build_parser().parse_args(argv)
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
    except (FloatingPointError, MemoryError) as err:  # the run itself failed: diverged, or out of memory
        print(f"seqrl: error: {_one_line(err) or type(err).__name__}", file=sys.stderr)
        return 1


def _one_line(message: Any) -> str:
    lines = str(message).strip().splitlines()
    return lines[0] if lines else type(message).__name__


__all__ = ["UsageError", "algorithm_details", "build_parser", "catalogue", "main"]
