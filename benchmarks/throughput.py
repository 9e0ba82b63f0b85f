"""Sampling and DPG throughput of the paper's policy on the current device.

    python benchmarks/throughput.py --device auto --sizes 1000,10000,100000,1000000

For each batch size: sequences sampled per second (whole sequences with their per-token
log-probabilities, motif task, max_len 31), DPG (gdcpp) episodes per second (sample from
q, score P_λ = r·exp(λ·φ), one gradient step of π), and peak memory. Prints a table and,
with --json, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from seqrl.algorithms import make_algorithm
from seqrl.ebm import GAMPotential, MotifFeatures
from seqrl.envs import MotifTask
from seqrl.policies import make_policy
from seqrl.training import FitConfig, fit
from seqrl.utils import describe_device, resolve_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (allocator, kernels)
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dpg-max", type=int, default=100_000, help="largest batch for the DPG step")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    task = MotifTask(train_size=1, test_size=1)
    policy = make_policy("lstm", task.vocab, task.max_len, hidden_size=args.hidden).to(device).eval()
    r = make_policy("lstm", task.vocab, task.max_len, hidden_size=args.hidden).to(device).eval()
    P = GAMPotential(r, MotifFeatures(task.vocab, task.motif, "1001111", 30), torch.ones(5)).to(device)
    rows = []
    print(f"device: {describe_device(device)}; LSTM 2x{args.hidden}, one-hot inputs, max_len {task.max_len}")
    print(f"{'batch':>9} {'seq/s (sample+logp)':>20} {'DPG episodes/s':>16} {'peak MiB':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            seconds = timed(lambda n=size: policy.sample(n), device, args.repeats)
        sample_rate = size / seconds
        dpg_rate = float("nan")
        if size <= args.dpg_max:
            pol = make_policy("lstm", task.vocab, task.max_len, hidden_size=args.hidden)
            algo = make_algorithm("gdcpp", pol, potential=P, proposal=r, samples_per_step=size, kl_samples=1000,
                                  check_every=10**9)  # the update alone: no proposal checks while timing
            cfg = FitConfig(max_steps=args.repeats, device=str(device), progress=False, eval_every=10**9)
            fit(algo, None, config=FitConfig(max_steps=1, device=str(device), progress=False, eval_every=10**9))
            sync(device)
            start = time.perf_counter()
            fit(algo, None, config=cfg)
            sync(device)
            dpg_rate = size * args.repeats / (time.perf_counter() - start)
        peak = peak_memory_mib(device)
        rows.append({"batch": size, "sequences_per_s": sample_rate, "dpg_episodes_per_s": dpg_rate, "peak_mib": peak})
        print(f"{size:>9} {sample_rate:>20,.0f} {dpg_rate:>16,.0f} {peak:>10,.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": describe_device(device), "hidden": args.hidden, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
