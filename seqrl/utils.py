"""Small shared helpers: devices, seeds, masked reductions."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from .types import SequenceBatch


class DeviceError(ValueError):
    """A device string that does not name a device this machine has."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` checked."""
    if isinstance(device, torch.device):
        device = str(device)
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise DeviceError(f"unknown device {device!r}: the CPU is one device ('cpu')")
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} requested but CUDA is not available on this machine "
                "(use --device cpu or --device auto)"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {device!r} requested but only {count} CUDA device(s) exist")
        return dev
    raise DeviceError(f"unsupported device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def describe_device(device: torch.device) -> str:
    """A human label such as ``"cpu"`` or ``"cuda:0 (NVIDIA H100)"``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded the same."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run a policy as a distribution (dropout off), restoring its train/eval mode on exit."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def motif_presence(batch: SequenceBatch, motif_ids: Tensor) -> Tensor:
    """[B] bool: the id string ``motif_ids`` occurs inside the symbols of each row (EOS excluded)."""
    m = motif_ids.numel()
    B, T = batch.tokens.shape
    if T < m:
        return torch.zeros(B, dtype=torch.bool, device=batch.device)
    windows = batch.tokens.unfold(1, m, 1)  # (B, T-m+1, m)
    hit = (windows == motif_ids.to(batch.device)).all(-1)
    starts = torch.arange(T - m + 1, device=batch.device)[None]
    inside = starts + m <= (batch.lengths - 1)[:, None]  # window ends before the EOS
    return (hit & inside).any(1)


def masked_sum(values_t: Tensor, mask_t: Tensor) -> Tensor:
    """Σ_t values[b, t]·mask[b, t] → [B]; masked positions may hold -inf or NaN safely."""
    return torch.where(mask_t, values_t, torch.zeros((), dtype=values_t.dtype, device=values_t.device)).sum(1)


def check_finite(values: Tensor, what: str, allow_neg_inf: bool = False) -> None:
    """Raise ``ValueError`` naming ``what`` if ``values`` holds NaN or ±inf."""
    bad = torch.isnan(values) | (values == float("inf"))
    if not allow_neg_inf:
        bad = bad | (values == float("-inf"))
    if bool(bad.any()):
        flat = bad.flatten().nonzero().flatten()
        first = int(flat[0])
        value = values.flatten()[first].item()
        raise ValueError(
            f"{what} holds non-finite values at {int(bad.sum())} of {values.numel()} entries "
            f"(first at flat index {first}: {value}); expected finite numbers"
        )
