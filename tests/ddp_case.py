"""One run of each sampling algorithm, under ``torchrun --nproc_per_node N`` (N gloo processes) or in one process
that plays N ranks (``--virtual N``): tests/test_distributed.py compares the weights the two leave.

For the two to see the same samples, every ``sample`` call draws rank r's share from rank r's own generator
(seeded by :func:`seqrl.distributed.rank_seed`): under torchrun, each process its own; in one process, each share
in turn, concatenated in rank order, which is the global batch the processes hold between them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from seqrl.algorithms import Offer, make_algorithm
from seqrl.distributed import init_from_env, rank_seed, world
from seqrl.ebm.base import base_log_prob
from seqrl.policies import make_policy
from seqrl.policies.base import Samples
from seqrl.rewards.base import FunctionReward
from seqrl.training import FitConfig, fit
from seqrl.types import SequenceBatch, Vocab, concat_batches

V = Vocab(["a", "b"])
L = 4
PROMPTS = SequenceBatch.from_lists([[3], [4, 3], [4, 4], [3, 3]], pad=0)
SEED = 3


def starts_with_a(batch: SequenceBatch) -> torch.Tensor:
    return (batch.tokens[:, 0] == V.stoi["a"]).float()


class Tilted:
    """log P = log a + 2·[y starts with "a"]: a target that differs from the start a."""

    name = "tilted"

    def __init__(self, base) -> None:
        self.base = base

    def log_potential(self, batch):
        return base_log_prob(self.base, batch) + 2.0 * starts_with_a(batch)


def share_samples(policy_cls: type, virtual: int):
    """Route ``policy_cls.sample`` through per-rank generators (see the module docstring)."""
    original = policy_cls.sample
    streams = [torch.Generator().manual_seed(rank_seed(SEED, r)) for r in range(max(virtual, world().size))]

    def sample(self, num_samples=1, context=None, *, generator=None, **kwargs):
        if generator is not None:
            return original(self, num_samples, context, generator=generator, **kwargs)
        if virtual == 1:
            return original(self, num_samples, context, generator=streams[world().rank], **kwargs)
        parts = []
        for r in range(virtual):
            if context is None:
                parts.append(original(self, num_samples // virtual, None, generator=streams[r], **kwargs))
            else:
                rows = context.batch_size // virtual
                chunk = context.index(torch.arange(r * rows, (r + 1) * rows, device=context.device))
                parts.append(original(self, num_samples, chunk, generator=streams[r], **kwargs))
        width = max(p.logp_t.shape[1] for p in parts)
        logp_t = torch.cat([torch.nn.functional.pad(p.logp_t, (0, width - p.logp_t.shape[1])) for p in parts])
        return Samples(concat_batches([p.batch for p in parts]), logp_t)

    policy_cls.sample = sample
    return original


def policy(kind: str):
    if kind == "lstm":
        return make_policy("lstm", V, L, hidden_size=16, embedding_dim=8, dropout=0.0, seed=1).double()
    return make_policy("seq2seq", V, L, source_vocab=V, hidden_size=16, embedding_dim=8, dropout=0.0,
                       seed=1).double()


CASES = {
    # the running Ẑ, the GDC++ baseline, and the KL rule's proposal swaps (estimated on every rank's share)
    "gdcpp": ("lstm", dict(samples_per_step=64, check_every=2, kl_samples=64, lr=3e-3), False),
    # the leave-one-out baseline over the global batch, and Ziegler's β from the global KL
    "kl_control": ("lstm", dict(samples_per_step=64, target_kl=0.05, beta=0.5, lr=3e-3), False),
    # one Ẑ_x per prompt, each prompt's completions on one rank
    "cdpg": ("seq2seq", dict(samples_per_step=64, lr=3e-3), True),
    # RLOO: each prompt's completions' leave-one-out baseline
    "kl_control_prompts": ("seq2seq", dict(samples_per_step=64, beta=0.5, lr=3e-3), True),
}


def run_case(name: str, out: Path, virtual: int) -> None:
    kind, settings, prompted = CASES[name]
    start = policy(kind)
    original = share_samples(type(start), virtual)
    base = start.frozen_copy()
    algorithm_name = name.removesuffix("_prompts")
    target = ({"reward": FunctionReward(starts_with_a, name="a_first")} if algorithm_name == "kl_control"
              else {"potential": Tilted(base), "proposal": base})
    offer = Offer(prompts=PROMPTS if prompted else None, steps=6, **target)
    algorithm = make_algorithm(algorithm_name, start, offer, **settings)
    initial = {k: v.detach().clone() for k, v in start.state_dict().items()}
    fit(algorithm, config=FitConfig(max_steps=6, progress=False, device="cpu", seed=SEED))
    type(start).sample = original
    if world().main:
        torch.save({"weights": {k: v.detach().clone() for k, v in algorithm.policy.state_dict().items()},
                    "initial": initial,
                    "beta": getattr(algorithm, "beta", None), "log_z": getattr(algorithm, "z_sum", None),
                    "proposal_updates": getattr(algorithm, "proposal_updates", None)}, out / f"{name}.pt")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--virtual", type=int, default=1)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--then-train", nargs=argparse.REMAINDER, default=None,
                        help="then run `seqrl train` with these arguments in the same processes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    init_from_env("cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.cases:
        run_case(name, out, args.virtual)
    if args.then_train:
        from seqrl.cli import main as seqrl

        return seqrl(["train", *args.then_train])
    return 0


if __name__ == "__main__":
    sys.exit(main())
