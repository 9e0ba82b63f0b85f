"""Merge the results of one suite run in pieces (e.g. one process per seed) into one table.

    OMP_NUM_THREADS=1 seqrl bench seq2seq --seeds 0 --out runs/s0 &   # … one per seed
    python benchmarks/merge_results.py runs/s0 runs/s1 runs/s2 --out runs/merged
    python benchmarks/merge_results.py runs/a runs/b --algos mle,raml --out runs/merged   # some rows only

Prints the suite's table over all runs and writes ``results.json``/``results.csv`` (and, for
suites that keep curves, their plot) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqrl.bench.runner import SUITES, RunRecord, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="output folders of `seqrl bench` runs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--algos", help="comma-separated algorithms to keep from every folder (default: all)")
    args = parser.parse_args()
    keep = set(args.algos.split(",")) if args.algos else None
    payloads = [json.loads((d / "results.json").read_text()) for d in args.dirs]
    suites = {p["suite"] for p in payloads}
    if len(suites) != 1:
        raise SystemExit(f"the runs come from different suites: {sorted(suites)}")
    name = suites.pop()
    suite = SUITES.get(name)()
    records = [RunRecord(**run) for p in payloads for run in p["runs"] if keep is None or run["algorithm"] in keep]
    if not records:
        raise SystemExit(f"no runs of {sorted(keep or ())} in {[str(d) for d in args.dirs]}")
    curves = [d / f"{name}_curves.json" for d in args.dirs]
    if hasattr(suite, "curves") and all(path.exists() for path in curves):
        suite.curves = [c for path in curves for c in json.loads(path.read_text())
                        if keep is None or c["algorithm"] in keep]
    print(suite.table(records))
    write_results(name, payloads[0]["device"], min(p["started"] for p in payloads), records, args.out)
    if hasattr(suite, "curves"):
        for path in suite.plot(records, args.out):
            print(f"wrote {path}")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.csv'}")


if __name__ == "__main__":
    main()
