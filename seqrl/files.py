"""Files seqrl reads and writes, made safe against hostile inputs, kills, full disks and a second process.

* :func:`load_tensors`: ``torch.load(weights_only=True)``: a state, checkpoint or cache file is data, never
  code. A crafted pickle (one whose unpickling would call a function) is refused before anything runs, and
  every failure is one :class:`UnsafeFileError` line naming the file.
* :func:`atomic_save` / :func:`atomic_write_text`: written to a private temporary file in the same folder,
  fsynced, then renamed over the old one: a reader or a kill sees the old file or the new one, never part of
  one; a full disk leaves the old file and no temporary (:class:`DiskFullError`). New files get the mode the
  user's umask gives (0644 under 022), as ``open()`` would, not ``mkstemp``'s 0600.
* :class:`RunLock`: one process per output folder (an ``fcntl`` advisory lock, which the kernel releases when
  its holder dies, so a killed run never leaves a stale lock).
* :func:`fingerprint`: a content hash of data (tensors, numbers, strings and containers of them), what a
  resume compares to refuse other data or settings.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


class UnsafeFileError(ValueError):
    """A file that seqrl will not load: not a seqrl file, corrupt, truncated, or holding code."""


class CodeInFileError(UnsafeFileError):
    """A file whose unpickling would call code: refused, never run."""


class DiskFullError(OSError):
    """Saving failed for lack of space (or quota); the previous file is intact and no temporary is left."""


class LockedError(RuntimeError):
    """Another live process holds the output folder's lock."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: Path, write: Callable[[io.BufferedWriter], Any], what: str) -> Path:
    """Write through ``write(handle)`` into a temporary beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _new_file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = "the previous file is intact" if path.exists() else "nothing was written"
            raise DiskFullError(err.errno, f"no space left on the device while saving {what} {path}; {kept}") \
                from None
        if isinstance(err, RuntimeError) and "No space left" in str(err):  # torch's zip writer wraps ENOSPC
            kept = "the previous file is intact" if path.exists() else "nothing was written"
            raise DiskFullError(errno.ENOSPC, f"no space left on the device while saving {what} {path}; {kept}") \
                from None
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str, what: str = "file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see the module docstring)."""
    data = text.encode("utf-8")
    return _atomic(Path(path), lambda handle: handle.write(data), what)


def atomic_save(obj: Any, path: str | Path, what: str = "file") -> Path:
    """``torch.save(obj)`` to ``path`` atomically; ``obj`` must be data that :func:`load_tensors` accepts."""
    return _atomic(Path(path), lambda handle: torch.save(obj, handle), what)


def load_tensors(path: str | Path, what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, numbers, strings and containers only.

    A pickle that names any other callable (the way a crafted file runs code) is refused before it is called;
    a missing, truncated or foreign file is one :class:`UnsafeFileError` line naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        if any("Unsupported global" in line for line in reason):  # a callable named: how a pickle runs code
            detail = next((line for line in reason if "Unsupported global" in line or "GLOBAL" in line), "")
            detail = f" ({detail.strip()})" if detail else ""
            raise CodeInFileError(f"{path}: refused to load this {what}: it holds more than tensors and plain data "
                                  f"(a pickle that would run code){detail}") from None
        size = path.stat().st_size
        raise UnsafeFileError(f"{path}: not a readable {what} ({size} bytes; corrupt or truncated: "
                              f"{reason[0] if reason else 'unpickling failed'})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError, TypeError,
            AttributeError) as err:  # torch's unpickler stumbles on foreign bytes in many ways (IndexError on
        # a text file): all are "not a readable file", none may become a traceback
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        size = path.stat().st_size
        raise UnsafeFileError(f"{path}: not a readable {what} ({size} bytes; corrupt or truncated: {first})") \
            from None


# --- data fingerprints ---------------------------------------------------------------------------------------
def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, dict):
        digest.update(b"D")
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, float):
        digest.update(b"F" + (repr(value) if math.isfinite(value) else str(value)).encode())
    else:
        digest.update(b"S" + json.dumps(value, default=repr).encode())


def fingerprint(*values: Any) -> str:
    """A sha256 hex digest of ``values`` (tensors by dtype, shape and bytes; containers in order, dict keys
    sorted): equal for equal contents, whatever the objects' identity or a file's path."""
    digest = hashlib.sha256()
    for value in values:
        _feed(digest, value)
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes (its contents, not its path)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- one process per folder -----------------------------------------------------------------------------------
LOCK_NAME = ".seqrl.lock"


class RunLock:
    """An exclusive ``fcntl`` lock on ``folder/.seqrl.lock`` holding the owner's PID.

    ``acquire()`` fails at once with :class:`LockedError` naming the PID of a live holder; the kernel drops the
    lock of a process that dies, so a killed run leaves at most the file, never a lock. Windows has no fcntl:
    there the lock is a no-op."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover  (not POSIX)
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _new_file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockedError(f"{self.folder} is in use by another seqrl process (PID {holder}); wait for it, "
                                  "or use another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextmanager
def locked(folder: str | Path | None) -> Iterator[RunLock | None]:
    """``with locked(out):`` holds ``out``'s :class:`RunLock` for the block (nothing when ``folder`` is None)."""
    if folder is None:
        yield None
        return
    with RunLock(folder) as lock:
        yield lock


__all__ = ["CodeInFileError", "DiskFullError", "LOCK_NAME", "LockedError", "RunLock", "UnsafeFileError", "atomic_save",
           "atomic_write_text", "file_fingerprint", "fingerprint", "load_tensors", "locked"]
