"""How many torch threads one ``seqrl train`` should use on this machine: wall time of the same one-epoch run with
1 and 2 threads, on an idle machine and with one other CPU-bound process (a second run of the same command)
sharing the cores. The CLI's default (``seqrl.cli.common.DEFAULT_THREADS``) is set from this measurement.

    OMP_NUM_THREADS=1 python benchmarks/threads.py --repeats 3

Prints a table of median wall seconds (and the spread) per (threads, load); run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMAND = [sys.executable, "-m", "seqrl", "train", "mle", "--env", "seqrl/ToyTranslation-v0", "--epochs", "1",
           "--task-set", "train_size=1000", "--no-progress", "--device", "cpu"]


def one_run(threads: int, loaded: bool) -> float:
    """Wall seconds of one run with ``threads`` torch threads, alone or beside a competing copy of itself."""
    competitor = None
    if loaded:  # the same work at the same time: what a second process on a shared 2-core machine looks like
        competitor = subprocess.Popen([*COMMAND, "--threads", "1"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
    start = time.perf_counter()
    subprocess.run([*COMMAND, "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if competitor is not None:
        competitor.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'threads':>7} {'load':>8} {'median s':>9} {'min–max s':>14}")
    for loaded in (False, True):
        for threads in (1, 2):
            times = [one_run(threads, loaded) for _ in range(args.repeats)]
            print(f"{threads:>7} {'loaded' if loaded else 'idle':>8} {statistics.median(times):>9.1f} "
                  f"{min(times):>6.1f}–{max(times):<6.1f}", flush=True)


if __name__ == "__main__":
    main()
