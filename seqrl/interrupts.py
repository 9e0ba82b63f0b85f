"""Ctrl-C (SIGINT) and SIGTERM are one event: "stop, keep what is done".

Schedulers, ``timeout`` and ``kill`` send SIGTERM where a terminal sends SIGINT; seqrl treats both alike: a
training run saves its state between two steps, a benchmark keeps every finished job, and the command exits
with ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM) after one line.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal; ``signum`` says which (``exit_code`` is the shell's 128 + signum)."""

    def __init__(self, message: str = "interrupted", signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_of(err: BaseException) -> int:
    """The signal behind an interruption (SIGINT for a plain KeyboardInterrupt)."""
    return int(getattr(err, "signum", signal.SIGINT))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted("interrupted" if signum == signal.SIGINT else "terminated", signum)


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise :class:`Interrupted` as Ctrl-C raises KeyboardInterrupt (the CLI does this first)."""
    if _main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupted)


class InterruptFlag:
    """While installed, a stop signal only sets ``raised`` (and ``signum``), so that the loop stops where its
    state is whole; a second signal interrupts at once. ``restore()`` puts the previous handlers back."""

    def __init__(self) -> None:
        self.raised = False
        self.signum = int(signal.SIGINT)
        self._previous: dict[int, Any] = {}
        if _main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            _raise_interrupted(signum, frame)
        self.raised, self.signum = True, int(signum)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


@contextmanager
def deferred() -> Iterator[None]:
    """Hold stop signals while a block runs (saving a finished job whole); deliver the first one after it."""
    if not _main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {sig: signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
                                for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signum, frame = caught[0]
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, frame)
            elif signum == signal.SIGINT and handler in (signal.SIG_DFL, None):
                raise KeyboardInterrupt
            elif handler in (signal.SIG_DFL, None):
                _raise_interrupted(signum, frame)


def ignore_stop_signals() -> None:
    """For worker processes: the parent decides when its workers stop (it kills them on an interruption), so a
    signal sent to the whole process group does not break the pool under a job that is being saved."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


__all__ = ["InterruptFlag", "Interrupted", "STOP_SIGNALS", "deferred", "ignore_stop_signals", "signal_of",
           "terminate_as_interrupt"]
