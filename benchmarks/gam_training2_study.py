"""Training-2 ablations on one GAM (quick settings: 64-unit LSTM): which part of GDC++ helps or hurts.

    python benchmarks/gam_training2_study.py --size 500 --steps 200 \\
        --variants dpg_off,gdcpp,gdcpp:proposal_update=valid_ce,dpg_off:proposal_update=kl

Trains r and fits λ (SNIS) once, then runs every (variant, lr, seed) from r for ``--steps``
steps of ``--batch`` episodes. A variant is an algorithm name with optional config overrides
(``name:key=value:key=value``): GDC++ is ``dpg_off`` plus two changes, the baseline Z·π/q
(``baseline=true``) and the KL-adaptive proposal rule (``proposal_update=kl``); the variants
above separate them. Every ``--eval-every`` steps it records KL(p_λ‖π) estimated by importance
sampling from r (which covers p_λ) and prints, per run, the final KL and CE(T, π), the number of
proposal updates and the episodes needed to reach each KL threshold. ``--json`` keeps the curves.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from seqrl.algorithms import make_algorithm
from seqrl.bench.gam import QUICK_SETTINGS, fit_gam, new_policy, train_r
from seqrl.envs import MotifTask
from seqrl.metrics import cross_entropy
from seqrl.training import Callback, FitConfig, fit


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    name, *pairs = text.split(":")
    overrides: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


def episodes_to_reach(points: list[dict[str, float]], threshold: float) -> float | None:
    return next((p["episodes"] for p in points if p["kl_p_pi"] <= threshold), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=500, help="|D|")
    parser.add_argument("--motif", default="1000101000101")
    parser.add_argument("--mask", default="1001111")
    parser.add_argument("--variants", default="dpg_off,gdcpp,gdcpp:proposal_update=valid_ce,dpg_off:proposal_update=kl")
    parser.add_argument("--lrs", default="1e-2")
    parser.add_argument("--seeds", default="0", help="Training-2 seeds (r and λ are fitted once, with --data-seed)")
    parser.add_argument("--data-seed", type=int, default=1234)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500, help="episodes per step")
    parser.add_argument("--clip", default="0.25", help="gradient-norm clipping ('none' to turn it off)")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--kl-samples", type=int, default=5000, help="samples of r per KL estimate on the curve")
    parser.add_argument("--thresholds", default="2,1,0.5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write every run's curve here")
    args = parser.parse_args()

    st, dev = QUICK_SETTINGS, torch.device(args.device)
    task = MotifTask(args.motif, train_size=args.size, seed=args.data_seed)
    r, _ = train_r(task, st, args.data_seed, dev, False)
    gam = fit_gam(task, r, args.mask, st, args.data_seed, torch.Generator(device=dev).manual_seed(args.data_seed))
    P, z, kl_of = gam.potential, gam.log_z, gam.divergences

    def kl(policy, n: int | None = None) -> float:
        return kl_of(policy, n)["kl_p_pi"]

    class Curve(Callback):
        def __init__(self) -> None:
            self.points: list[dict[str, float]] = []
            self.grad_norms: list[float] = []

        def on_step_end(self, algorithm, state) -> None:
            if "grad_norm" in state.metrics:  # the norm before clipping
                self.grad_norms.append(state.metrics["grad_norm"])

        def on_evaluation(self, algorithm, state) -> None:
            self.points.append({"step": state.step, "episodes": float(algorithm.episodes),
                                "kl_p_pi": kl(algorithm.policy, args.kl_samples)})

    clip = None if args.clip.lower() == "none" else float(args.clip)
    test = task.split("test")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print(f"|D|={args.size} motif={args.motif} mask={args.mask} λ={[round(x, 2) for x in P.lam.tolist()]} "
          f"log Z={z.log_z:.3f}±{z.stderr:.3f}")
    print(f"r: KL={kl(r):.3f} CE={cross_entropy(r, test):.2f} H={task.entropy():.2f}", flush=True)
    runs = []
    for variant in args.variants.split(","):
        name, overrides = parse_variant(variant)
        for lr in (float(x) for x in args.lrs.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                torch.manual_seed(seed)
                policy = new_policy(task, st).to(dev)
                policy.load_state_dict(r.state_dict())
                alg = make_algorithm(name, policy, potential=P, proposal=r, valid=task.split("valid"),
                                     samples_per_step=args.batch, kl_samples=st.kl_samples, lr=lr,
                                     clip_grad_norm=clip, check_every=args.eval_every, **overrides)
                curve = Curve()
                t0 = time.perf_counter()
                fit(alg, None, callbacks=[curve],
                    config=FitConfig(max_steps=args.steps, eval_every=args.eval_every, progress=False,
                                     device=args.device, seed=seed))
                run = {"variant": variant, "lr": lr, "seed": seed, "kl_final": kl(policy),
                       "ce_test": cross_entropy(policy, test), "proposal_updates": alg.proposal_updates,
                       "episodes": alg.episodes, "wall_s": time.perf_counter() - t0, "curve": curve.points,
                       "grad_norms": curve.grad_norms}
                reach = ", ".join(f"KL≤{t:g}: {episodes_to_reach(curve.points, t) or '–'}" for t in thresholds)
                norms = ""
                if curve.grad_norms:
                    q = torch.tensor(curve.grad_norms).quantile(torch.tensor([0.1, 0.5, 0.9, 1.0])).tolist()
                    norms = " grad norm q10/50/90/max=" + "/".join(f"{v:.3g}" for v in q)
                print(f"{variant} lr={lr:g} seed={seed}: KL={run['kl_final']:.3f} CE={run['ce_test']:.2f} "
                      f"proposal updates={alg.proposal_updates} episodes {reach}{norms} wall={run['wall_s']:.0f}s",
                      flush=True)
                runs.append(run)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
