"""What a run leaves on disk and reads back: the resumable training state and policy checkpoints.

Both are data only (tensors, numbers, strings, and lists/tuples/dicts of them), written atomically
(:mod:`seqrl.files`) and read with ``weights_only=True``: a crafted file is refused before anything in it runs.

A training state also records the *inputs* of the run that made it (:func:`run_inputs`): a fingerprint of the
training data's contents, the algorithm's config, the policy's settings, the loop settings that must not change,
and the seqrl version. :func:`check_inputs` compares them on resume and names the first difference in one line,
so a run never silently continues on other data, another policy shape or an incompatible version.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import UnsafeFileError, atomic_save, fingerprint, load_tensors
from .types import SequenceBatch, Vocab

STATE_FORMAT = "seqrl-fit-state-2"
CHECKPOINT_FORMAT = "seqrl-policy-1"


def plain(value: Any) -> Any:
    """``value`` as JSON-like data (dataclasses as dicts, tuples kept, anything else as its repr)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return repr(value)


def policy_settings(policy: Any) -> dict[str, Any]:
    """What builds ``policy`` and shapes its weights: its registered name, settings, vocabularies, length and
    parameter shapes (the identity a resumed run must share)."""
    source = getattr(policy, "source_vocab", None)
    return {
        "policy": getattr(policy, "registry_name", type(policy).__name__),
        "settings": plain(policy.extra_state()) if hasattr(policy, "extra_state") else {},
        "max_len": getattr(policy, "max_len", None),
        "vocab": list(policy.vocab.itos) if hasattr(policy, "vocab") else None,
        "source_vocab": list(source.itos) if source is not None else None,
        "shapes": {k: list(v.shape) for k, v in policy.state_dict().items()},
    }


def data_fingerprint(data: SequenceBatch | None) -> str | None:
    """sha256 of a batch's token ids, lengths and context (None for no data)."""
    if data is None:
        return None
    parts: list[Any] = [data.tokens, data.lengths]
    if data.context is not None:
        parts += [data.context.tokens, data.context.lengths]
    return fingerprint(*parts)


def run_inputs(algorithm: Any, train: SequenceBatch | None, loop: dict[str, Any]) -> dict[str, Any]:
    """The inputs a resumed run must share with the saved one (see the module docstring)."""
    from ._version import __version__

    policy = getattr(algorithm, "policy", None)
    return {
        "seqrl_version": __version__,
        "algorithm": algorithm.name,
        "config": plain(getattr(algorithm, "config", None)),
        "policy": policy_settings(policy) if policy is not None else None,
        "data": data_fingerprint(train),
        "loop": plain(loop),
    }


def _difference(key: str, saved: Any, now: Any) -> str:
    if isinstance(saved, dict) and isinstance(now, dict):
        for k in sorted(set(saved) | set(now), key=str):
            if saved.get(k) != now.get(k):
                return _difference(f"{key}.{k}", saved.get(k), now.get(k))
    text = lambda v: json.dumps(v, default=repr)[:80]  # noqa: E731
    return f"{key}: {text(saved)} there, {text(now)} here"


_WHAT = {"seqrl_version": "another seqrl version", "algorithm": "another algorithm", "config": "another config",
         "policy": "another policy", "data": "other training data (the contents differ)",
         "loop": "other training-loop settings"}


def check_inputs(path: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse a resume whose inputs differ from the saved run's: one ValueError line naming the difference."""
    for key in _WHAT:
        if saved.get(key) != now.get(key):
            detail = "" if key == "data" else f" ({_difference(key, saved.get(key), now.get(key))})"
            raise ValueError(f"resume: {path} was saved with {_WHAT[key]}{detail}; resume only the same run "
                             "(same data, settings, policy and seqrl version), or start anew in another folder")


# --- random number generators as data ----------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's (CPU and CUDA) generator states as tensors and plain numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    random.setstate(_as_tuples(state["python"]))
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# --- the training state ------------------------------------------------------------------------------------
def save_training_state(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (data only) atomically as a training state; a full disk keeps the previous one."""
    return atomic_save({"format": STATE_FORMAT, **payload}, path, "training state")


def rank_state_path(path: Path, rank: int) -> Path:
    """Where rank ``rank`` (> 0) of a run over several processes keeps its random streams, beside the state."""
    return path.with_name(f"{path.name}.rank{rank}")


def load_training_state(path: str | Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """The training state at ``path``, after checking that it is one and that its run had these ``inputs``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume: no training state at {path}")
    saved = load_tensors(path, "training state")
    if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
        found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
        raise UnsafeFileError(f"{path} is not a seqrl training state of this version (format {found!r}, "
                              f"expected {STATE_FORMAT!r})")
    check_inputs(path, saved.get("inputs", {}), inputs)
    return saved


# --- policy checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, policy: Any, extra: dict[str, Any] | None = None) -> Path:
    """Save a policy's weights with everything needed to rebuild it (name, settings, vocabularies), as data."""
    source_vocab = getattr(policy, "source_vocab", None)
    return atomic_save({
        "format": CHECKPOINT_FORMAT,
        "policy": policy.registry_name,
        "config": plain(policy.extra_state()),
        "max_len": policy.max_len,
        "vocab": policy.vocab.state_dict(),
        "source_vocab": source_vocab.state_dict() if source_vocab is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "extra": plain(extra or {}),
    }, Path(path), "policy checkpoint")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The data of a policy checkpoint, checked to be one (weights_only: nothing in it runs)."""
    ckpt = load_tensors(path, "policy checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "state_dict" not in ckpt:
        raise UnsafeFileError(f"{path} is not a seqrl policy checkpoint")
    return ckpt


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """Rebuild the policy saved by :func:`save_checkpoint` (weights loaded, eval mode)."""
    from .policies import POLICIES, make_policy
    from .registry import names_only
    from .utils import resolve_device

    ckpt = read_checkpoint(path)
    name = ckpt["policy"]
    with names_only():  # a name written in a file never chooses code to import (no module:Class)
        if not isinstance(name, str) or name not in POLICIES:
            raise UnsafeFileError(f"{path} names the policy {str(name)[:80]!r}, which is not a registered policy "
                                  f"(known: {', '.join(POLICIES.names())}); a checkpoint never imports code")
        vocab = Vocab.from_state_dict(ckpt["vocab"])
        source = Vocab.from_state_dict(ckpt["source_vocab"]) if ckpt["source_vocab"] else None
        config = dict(ckpt["config"])
        config.pop("cell", None)
        policy = make_policy(name, vocab, ckpt["max_len"], source_vocab=source, **config)
    try:
        policy.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise UnsafeFileError(f"{path}: its weights do not fit the policy it names "
                              f"({str(err).strip().splitlines()[0]})") from None
    return policy.to(resolve_device(device)).eval()


__all__ = ["CHECKPOINT_FORMAT", "STATE_FORMAT", "check_inputs", "data_fingerprint", "load_checkpoint",
           "load_training_state", "plain", "policy_settings", "read_checkpoint", "rng_state", "run_inputs",
           "save_checkpoint", "save_training_state", "set_rng_state"]
