"""What every ``seqrl`` command shares: the one-line usage error, argparse types that check numbers, option
readers (``KEY=VALUE``, comma lists, the output folder), progress and CPU-thread choices."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ..config import MAX_INT

DEFAULT_THREADS = 1
"""torch threads per process unless ``--threads`` says otherwise: on this project's 2-core CPU one thread was
faster than two for every command measured, idle and loaded (``benchmarks/threads.py``, docs/benchmarks.md):
the models are small, and a second thread mostly waits, or, with another process on the other core, stalls."""


class UsageError(ValueError):
    """A command line that names an option, value or path that cannot work; exits 2."""


class Parser(argparse.ArgumentParser):
    """argparse whose own errors (a missing argument, an unknown option, a bad value) are the same one
    ``seqrl: error:`` line as every other usage error, not a usage block."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def split_sets(items: list[str], option: str) -> dict[str, str]:
    """``["k=v", …]`` → ``{k: "v"}`` (texts: each is parsed by the type of the field it sets)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def int_list(text: str | None, option: str, minimum: int = 0) -> list[int] | None:
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


def names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    found = [v.strip() for v in text.split(",")]
    if not all(found):
        raise UsageError(f"{option}: an empty name in {text!r}")
    return found


def out_dir(path: str | None, option: str = "--out") -> Path | None:
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


def progress(args: argparse.Namespace) -> bool | Literal["lines"]:
    """Bars on a terminal; elsewhere (a log, a scheduler) one plain line per evaluation or finished job
    (``"lines"``), so that a log shows the run is alive without 90 KB of carriage returns; ``--progress``
    forces bars, ``--no-progress`` silences both."""
    if args.no_progress:
        return False
    if args.progress or (sys.stdout.isatty() and sys.stderr.isatty()):
        return True
    return "lines"


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None, workers: int = 1) -> int:
    """Set torch's threads for this process (``--threads``, default :data:`DEFAULT_THREADS`), refusing
    workers × threads beyond the cores: oversubscribed, every process waits for the others."""
    import torch

    count = threads or DEFAULT_THREADS
    if workers * count > cores():
        raise UsageError(f"--workers {workers} × --threads {count} = {workers * count} exceeds the {cores()} CPU "
                         "cores here: oversubscribed threads wait for each other; use fewer")
    torch.set_num_threads(count)
    return count


def with_option(option: str, build: Callable[[], Any]) -> Any:
    """``build()``, with a ValueError/TypeError it raises about the values ``option`` gave prefixed by the option's
    name (a size above its limit, a value out of range), so that the one error line says what to change."""
    try:
        return build()
    except (ValueError, TypeError) as err:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        raise UsageError(text if text.startswith(option) else f"{option}: {text}") from None


def tensorboard_dir(path: str | None) -> None:
    """``--tensorboard DIR``: the package present and the folder writable, before any training."""
    if path is None:
        return
    from ..tracking import require_tensorboard

    try:
        require_tensorboard()
    except ImportError as err:
        raise UsageError(f"--tensorboard: {err}") from None
    out_dir(path, "--tensorboard")


def progress_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    group.add_argument("--no-progress", action="store_true", help="never show progress bars or progress lines")


def at_least(kind: type, minimum: float, what: str) -> Callable[[str], Any]:
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


positive = at_least(int, 1, "an integer")
non_negative = at_least(int, 0, "an integer")
non_negative_float = at_least(float, 0, "a number")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def field_type(cls: Any, name: str) -> Any:
    from ..config import field_types

    return field_types(cls.Config)[name]
