"""The speed-up of one run over 2 processes (``torchrun --nproc_per_node 2 -m seqrl train …``, gloo, 1 thread
each) over the same run in 1 process with 1 thread, on the same global batch.

    OMP_NUM_THREADS=1 python benchmarks/ddp_speed.py --repeats 3

Each repeat runs the two alternately (so that a load on the machine falls on both); the time is fit's own
``wall_s`` (training and evaluation, not the start of Python or the rendezvous). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = {
    "kl_control, lstm, 512 samples/step": ["kl_control", "--env", "seqrl/Motif-v0", "--batch-size", "512"],
    "gdcpp, lstm, 512 samples/step": ["gdcpp", "--env", "seqrl/Motif-v0", "--batch-size", "512",
                                      "--potential", "ddp_speed:ones"],
}


def ones(batch):
    """log P(x) = ½·(number of 1s): a potential with full support (no r to train first)."""
    return (batch.tokens == 4).float().sum(1) * 0.5


def wall(argv: list[str], processes: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                     str(processes), "-m", "seqrl"] if processes > 1 else [sys.executable, "-m", "seqrl"])
        command = [*launcher, "train", *argv, "--steps", str(steps), "--device", "cpu", "--no-progress",
                   "--threads", "1", "--out", out]
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
        subprocess.run(command, check=True, capture_output=True, env=env)
        return float(json.loads((Path(out) / "train.json").read_text())["wall_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print("| run | 1 process (s) | 2 processes (s) | speed-up |")
    print("|---|---|---|---|")
    for name, argv in RUNS.items():
        one, two = [], []
        for _ in range(args.repeats):
            one.append(wall(argv, 1, args.steps))
            two.append(wall(argv, 2, args.steps))
        ratios = [a / b for a, b in zip(one, two)]
        print(f"| {name}, {args.steps} steps | {statistics.median(one):.2f} | {statistics.median(two):.2f} | "
              f"{statistics.median(ratios):.2f}× (per repeat {', '.join(f'{r:.2f}' for r in ratios)}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
