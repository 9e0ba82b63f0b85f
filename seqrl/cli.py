"""The ``seqrl`` command: ``list``, ``train``, ``bench``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def catalogue() -> dict[str, list[str]]:
    from .algorithms import ALGORITHMS
    from .bench import SUITES
    from .envs import ENV_IDS
    from .policies import POLICIES
    from .rewards import REWARDS

    return {
        "algorithms": ALGORITHMS.names(),
        "envs": list(ENV_IDS),
        "rewards": REWARDS.names(),
        "policies": POLICIES.names(),
        "suites": SUITES.names(),
    }


def algorithm_details() -> dict[str, dict[str, Any]]:
    """Per algorithm: its ERPO point ([ERPO] Eq. 1), where the papers give one, and what it requires."""
    from dataclasses import asdict

    from .algorithms import ALGORITHMS

    return {name: {"erpo_point": asdict(cls.erpo_point) if cls.erpo_point else None,
                   "requires": asdict(cls.requires), "summary": (cls.__doc__ or "").strip().split("\n")[0]}
            for name, cls in ALGORITHMS.items()}


def cmd_list(args: argparse.Namespace) -> int:
    cat = catalogue()
    details = algorithm_details()
    if args.json:
        print(json.dumps({**cat, "algorithm_details": details}, indent=2))
        return 0
    for key, names in cat.items():
        print(f"{key}: {', '.join(names)}")
    from .algorithms import ALGORITHMS

    print("\nERPO points (R, α, β) of [ERPO] Eq. 1:")
    for name, cls in ALGORITHMS.items():
        if cls.erpo_point is not None:
            print(f"  {name}: {cls.erpo_point}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .algorithms import make_algorithm
    from .envs import task_for_env
    from .metrics import corpus_bleu, cross_entropy
    from .policies import make_policy
    from .training import FitConfig, fit

    task = task_for_env(args.env, **_parse_sets(args.task_set))
    policy_name = args.policy or ("seq2seq" if task.is_conditional else "lstm")
    policy = make_policy(policy_name, task.vocab, task.max_len, source_vocab=task.source_vocab,
                         **_parse_sets(args.policy_set))
    algorithm = make_algorithm(args.algorithm, policy, **_parse_sets(args.set))
    config = FitConfig(max_epochs=args.epochs, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       patience=args.patience, device=args.device, seed=args.seed, progress=not args.no_progress,
                       checkpoint=str(Path(args.out) / "policy.pt") if args.out else None)
    result = fit(algorithm, task.split("train"), valid=task.split("valid"), config=config)
    test = task.split("test")
    report = {"algorithm": args.algorithm, "env": args.env, "steps": result.steps, "best_valid_ce": result.best,
              "test_ce": cross_entropy(policy, test), "wall_s": result.wall_s}
    if task.is_conditional:
        hyps = policy.greedy(1, test.context.to(policy.device)).batch.to_strings(task.vocab)
        report["test_bleu_greedy"] = corpus_bleu(hyps, test.to_strings(task.vocab))
    print(json.dumps(report, indent=2))
    if args.out:
        (Path(args.out) / "train.json").write_text(json.dumps({**report, "history": result.history}, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_suite

    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    algos = [a.strip() for a in args.algos.split(",")] if args.algos else None
    grid = {key: [v.strip() for v in value.split(",")] for key in ("sizes", "motifs", "masks", "data")
            if (value := getattr(args, key))}
    run_suite(args.suite, quick=args.quick, seeds=seeds, algos=algos, device=args.device, out=args.out,
              progress=not args.no_progress, grid=grid, settings=_parse_sets(args.set))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqrl", description="Training algorithms for sequence generators.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="show algorithms, environments, rewards, policies and suites")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train one algorithm on one environment's task")
    p.add_argument("algorithm")
    p.add_argument("--env", required=True, help="environment id, e.g. seqrl/Copy-v0")
    p.add_argument("--policy", help="policy name (default: lstm, or seq2seq for conditional tasks)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="directory for policy.pt and train.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="algorithm config field")
    p.add_argument("--task-set", action="append", default=[], metavar="KEY=VALUE", help="task argument")
    p.add_argument("--policy-set", action="append", default=[], metavar="KEY=VALUE", help="policy argument")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="run a benchmark suite and write results.json/csv and plots")
    p.add_argument("suite")
    p.add_argument("--quick", action="store_true", help="a reduced grid that runs in minutes on a CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--seeds", help="comma-separated seeds")
    p.add_argument("--algos", help="comma-separated algorithms")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--sizes", help="gam: comma-separated |D| values (overrides the grid's)")
    p.add_argument("--motifs", help="gam: comma-separated motifs")
    p.add_argument("--masks", help="gam: comma-separated feature masks, e.g. 1001111,Mv1001111")
    p.add_argument("--data", help="seq2seq: a TSV of source<TAB>target pairs instead of the toy task")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite setting (GamSettings / Seq2SeqSettings field), e.g. --set dpg_lr=3e-3")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"seqrl: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
