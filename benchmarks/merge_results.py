"""Merge the results of one suite run in pieces (e.g. one process per seed) into one table.

    OMP_NUM_THREADS=1 seqrl bench seq2seq --seeds 0 --out runs/s0 &   # … one per seed
    python benchmarks/merge_results.py runs/s0 runs/s1 runs/s2 --out runs/merged
    python benchmarks/merge_results.py runs/a runs/b --algos mle,raml --out runs/merged   # some rows only

Prints the suite's table over all runs and writes ``results.json``/``results.csv`` (and, for
suites that keep curves, their plot) under ``--out``, atomically, with the pieces' grids under
``grid.merged_from``; the previous plots of the suite there are replaced.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from seqrl.bench.store import read_results, write_plots, write_results
from seqrl.bench.suite import SUITES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="output folders of `seqrl bench` runs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--algos", help="comma-separated algorithms (row labels) to keep from every folder "
                        "(default: all)")
    args = parser.parse_args()
    # a row label may hold commas inside its brackets (erac[beta=0.1,lambda_var=0]): split outside them only
    keep = set(re.split(r",(?![^\[]*\])", args.algos)) if args.algos else None
    payloads = [read_results(d / "results.json") for d in args.dirs]  # null metrics back to NaN
    suites = {p["suite"] for p in payloads}
    if len(suites) != 1:
        raise SystemExit(f"the runs come from different suites: {sorted(suites)}")
    name = suites.pop()
    suite = SUITES.get(name)()
    records = [r for p in payloads for r in p["records"] if keep is None or r.algorithm in keep]
    if not records:
        raise SystemExit(f"no runs of {sorted(keep or ())} in {[str(d) for d in args.dirs]}")
    curves = [d / f"{name}_curves.json" for d in args.dirs]
    if hasattr(suite, "curves") and all(path.exists() for path in curves):
        suite.curves = [c for path in curves for c in json.loads(path.read_text())
                        if keep is None or c["algorithm"] in keep]
    print(suite.report(records))
    grid = {"merged_from": [p.get("grid") for p in payloads]}
    started = min(p["started"] for p in payloads)
    args.out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(suite, name, records, args.out) if hasattr(suite, "curves") else []
    write_results(name, payloads[0]["device"], started, records, args.out, grid=grid, plots=[p.name for p in plots])
    for path in plots:
        print(f"wrote {path}")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.csv'}")


if __name__ == "__main__":
    main()
