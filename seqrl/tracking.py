"""Per-step training metrics: ``metrics.csv`` whenever a run has a folder, TensorBoard when asked.

:func:`~seqrl.training.fit` adds the loggers of :func:`loggers_for` to its callbacks: with
``FitConfig.log_dir`` a :class:`CSVLogger` writes ``log_dir/metrics.csv`` (one row per optimizer step:
``step``, the loss and every metric the algorithm reports, and the evaluation metrics on the rows of the
steps where an evaluation ran); with ``FitConfig.tensorboard_dir`` a :class:`TensorBoardLogger` writes
the same scalars as TensorBoard events (``pip install 'seqrl[tensorboard]'``).

A benchmark job trains several policies through suites that build their own ``FitConfig``; the runner
wraps each job in :func:`log_runs`, and every ``fit`` inside (whose config names no folder) logs to its own
numbered subfolder ``ROOT/NN-ALGORITHM/``.
"""

from __future__ import annotations

import contextvars
import csv
import io
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .callbacks import Callback, FitState

METRICS_FILE = "metrics.csv"
TENSORBOARD_HINT = "TensorBoard logging needs the tensorboard package: pip install 'seqrl[tensorboard]'"


def require_tensorboard() -> None:
    """Raise ImportError, saying what to install, when ``torch.utils.tensorboard`` cannot be used."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{TENSORBOARD_HINT} ({err})") from None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return repr(_number(value))  # repr: every digit, so that the CSV reads back exactly


class CSVLogger(Callback):
    """``path`` gets one row per optimizer step (and one at step 0 for an evaluation at the start).

    The header grows when a new metric appears (the first evaluation's ``valid_*``): the file is then
    rewritten whole; otherwise each row is appended. ``resumed_at`` (the step a resumed fit starts
    from) keeps the rows of the earlier run up to that step; without it an old file is replaced.
    """

    def __init__(self, path: str | Path, resumed_at: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header: list[str] = ["step"]
        self.rows: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None
        if resumed_at is not None and self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                for row in reader:
                    if _number(row.get("step")) <= resumed_at:
                        self._add_keys(row)
                        self.rows.append({k: v for k, v in row.items() if v not in ("", None)})
        self._rewrite()

    def _add_keys(self, row: dict[str, Any]) -> bool:
        new = [k for k in row if k not in self.header]
        self.header.extend(new)
        return bool(new)

    def _line(self, row: dict[str, Any]) -> str:
        text = io.StringIO(newline="")
        csv.writer(text).writerow([row[k] if isinstance(row.get(k), str) else _cell(row.get(k))
                                   for k in self.header])
        return text.getvalue()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerow(self.header)
            handle.writelines(self._line(row) for row in self.rows)
        os.replace(tmp, self.path)  # a reader sees the old file or the new one

    def _write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._add_keys(row):
            self._rewrite()
        else:
            with self.path.open("a", encoding="utf-8", newline="") as handle:
                handle.write(self._line(row))

    def _flush(self) -> None:
        if self.pending is not None:
            self._write(self.pending)
            self.pending = None

    def on_step_end(self, algorithm, state: FitState) -> None:
        self._flush()
        self.pending = dict(state.metrics)  # held until this step's evaluation, if any, adds its metrics

    def on_evaluation(self, algorithm, state: FitState) -> None:
        if self.pending is not None and self.pending.get("step") == state.step:
            self.pending.update(state.metrics)
        else:
            self._flush()
            self.pending = dict(state.metrics)

    def on_fit_end(self, algorithm, state: FitState) -> None:
        self._flush()


class TensorBoardLogger(Callback):
    """Scalars ``train/KEY`` at every step and ``eval/KEY`` at every evaluation, under ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.step_keys: set[str] = set()

    def on_step_end(self, algorithm, state: FitState) -> None:
        self.step_keys = set(state.metrics)
        for key, value in state.metrics.items():
            if key != "step":
                self.writer.add_scalar(f"train/{key}", _number(value), state.step)

    def on_evaluation(self, algorithm, state: FitState) -> None:
        # state.metrics holds this step's training metrics too: log only what the evaluation added.
        for key, value in state.metrics.items():
            if key != "step" and key not in self.step_keys:
                self.writer.add_scalar(f"eval/{key}", _number(value), state.step)
        self.writer.flush()

    def on_fit_end(self, algorithm, state: FitState) -> None:
        self.writer.close()


class RunLogs:
    """The folders of the fits inside one :func:`log_runs` block: ``ROOT/01-mle``, ``ROOT/02-dpg_off``, …"""

    def __init__(self, csv_root: Path | None, tensorboard_root: Path | None) -> None:
        self.csv_root, self.tensorboard_root = csv_root, tensorboard_root
        self.count = 0

    def next(self, algorithm_name: str) -> tuple[Path | None, Path | None]:
        self.count += 1
        sub = f"{self.count:02d}-{safe_name(algorithm_name)}"
        return (self.csv_root / sub if self.csv_root is not None else None,
                self.tensorboard_root / sub if self.tensorboard_root is not None else None)


_CURRENT: contextvars.ContextVar[RunLogs | None] = contextvars.ContextVar("seqrl_run_logs", default=None)


@contextmanager
def log_runs(csv_root: str | Path | None, tensorboard_root: str | Path | None = None) -> Iterator[RunLogs]:
    """Within the block, each ``fit`` whose config names no log folder logs to a numbered subfolder of
    ``csv_root`` (metrics.csv) and of ``tensorboard_root`` (events), where given."""
    logs = RunLogs(Path(csv_root) if csv_root is not None else None,
                   Path(tensorboard_root) if tensorboard_root is not None else None)
    token = _CURRENT.set(logs)
    try:
        yield logs
    finally:
        _CURRENT.reset(token)


def safe_name(text: str, limit: int = 80) -> str:
    """``text`` as one path component: letters, digits and ``._=,+-`` kept, anything else as ``_``."""
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:limit] or "_"


def loggers_for(config: Any, algorithm_name: str, resumed_at: int | None = None) -> list[Callback]:
    """The loggers ``fit`` adds for ``config`` (a FitConfig): its ``log_dir`` and ``tensorboard_dir``, or,
    when it names neither, the next folders of the enclosing :func:`log_runs` block."""
    csv_dir = Path(config.log_dir) if config.log_dir is not None else None
    tb_dir = Path(config.tensorboard_dir) if config.tensorboard_dir is not None else None
    current = _CURRENT.get()
    if csv_dir is None and tb_dir is None and current is not None:
        csv_dir, tb_dir = current.next(algorithm_name)
    loggers: list[Callback] = []
    if csv_dir is not None:
        loggers.append(CSVLogger(csv_dir / METRICS_FILE, resumed_at=resumed_at))
    if tb_dir is not None:
        loggers.append(TensorBoardLogger(tb_dir))
    return loggers


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` as numbers (empty cells left out)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


__all__ = ["CSVLogger", "TensorBoardLogger", "log_runs", "loggers_for", "read_metrics", "require_tensorboard"]
