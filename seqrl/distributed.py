"""One run over several processes: ``torchrun --nproc_per_node N -m seqrl train …`` (torch.distributed; gloo on the
CPU, NCCL on GPUs).

Every rank holds the same weights and takes its share of each step's batch (a slice of the minibatch, ``1/N`` of
the samples, its chunk of the step's prompts); after ``backward`` the gradients are averaged, so every rank takes
the same step, the one a single process would take on the global batch. Every statistic an update reads across
the batch is computed over the global batch: DPG/GDC++'s running Ẑ and its baseline, leave-one-out baselines
(REINFORCE, KL-control's RLOO), KL-control's β controller, the support check, the KL estimates of the proposal
rule, and the logged metrics. Rank 0 alone writes files.

Randomness: the data order is the same on every rank (its generator is seeded by the run's seed); everything else
(sampling, dropout) draws from the rank's own stream, seeded by :func:`rank_seed`. With one process nothing here
does anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from .types import BatchError, SequenceBatch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place in the run (rank 0 of 1 without torch.distributed)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: str = "auto") -> World:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1 in the environment): gloo for the CPU, NCCL
    for CUDA; a no-op for a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    dist = torch.distributed
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return world()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own stream (rank 0: the run's seed itself, so one process is rank 0 of 1)."""
    return (seed + 1_000_003 * rank) % 2**63


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over the ranks (itself with one process), on ``tensor``'s device (NCCL reduces
    on the rank's GPU: a CPU tensor goes there and back)."""
    if world().size == 1:
        return tensor
    dist = torch.distributed
    on_gpu = dist.get_backend() == "nccl" and tensor.device.type != "cuda"
    out = tensor.to(torch.device("cuda", torch.cuda.current_device())) if on_gpu else tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(tensor.device) if on_gpu else out


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average every parameter's gradient over the ranks (the global batch's gradient when shares are equal)."""
    size = world().size
    if size == 1:
        return
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
            p.grad.div_(size)


def share(total: int, what: str) -> int:
    """This rank's share of ``total`` (which must split evenly: unequal shares would weigh ranks unequally)."""
    size = world().size
    if total % size:
        raise BatchError(f"{what} = {total} does not split evenly over {size} processes: use a multiple of {size}")
    return total // size


def shard(batch: SequenceBatch) -> SequenceBatch:
    """This rank's contiguous chunk of a minibatch: ``B // N`` rows each. The ``B mod N`` rows left over (only
    in an epoch's last, smaller minibatch: the full size is a multiple of N) are skipped, so that every rank's
    mean weighs the same."""
    w = world()
    if w.size == 1:
        return batch
    part = batch.batch_size // w.size
    if part == 0:
        raise BatchError(f"a minibatch of {batch.batch_size} rows cannot feed {w.size} processes")
    return batch.index(torch.arange(w.rank * part, (w.rank + 1) * part, device=batch.device))


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (so that every rank takes the same branch, e.g. to stop)."""
    if world().size == 1:
        return flag
    return bool(all_reduce_sum(torch.tensor(float(flag), dtype=torch.float64)) > 0)


def broadcast_state(module: torch.nn.Module) -> None:
    """Copy rank 0's weights and buffers to every rank (in place), so that all start from the same point."""
    if world().size == 1:
        return
    for tensor in module.state_dict().values():
        torch.distributed.broadcast(tensor, src=0)


def mean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The ranks' metrics averaged (one all-reduce), for logging."""
    if world().size == 1 or not metrics:
        return metrics
    keys = sorted(metrics)
    values = all_reduce_sum(torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)) / world().size
    return dict(zip(keys, values.tolist()))


__all__ = ["World", "all_reduce_sum", "any_rank", "average_gradients", "broadcast_state",
           "init_from_env", "mean_metrics", "rank_seed", "share", "shard", "world"]
