"""Training-2 learning-rate sweep on one GAM (quick settings: 64-unit LSTM, |D| = 500).

    python benchmarks/gam_dpg_lr.py --algos dpg_off,gdcpp --lrs 1e-2,3e-3 --steps 300

Trains r and fits λ (SNIS) once, then runs each (algorithm, lr) for ``--steps`` steps of 500
episodes from r, and prints the estimated KL(p_λ‖π) (importance sampling from r) and CE(T, π).
"""

from __future__ import annotations

import argparse
import time

import torch

from seqrl.algorithms import make_algorithm
from seqrl.bench.gam import QUICK_SETTINGS, new_policy, train_r
from seqrl.ebm import GAMPotential, MotifFeatures, Training1Config, fit_lambda
from seqrl.ebm.sampling import base_log_ratio, draw, estimate_divergences, estimate_log_z
from seqrl.envs import MotifTask
from seqrl.metrics import cross_entropy, sequence_log_probs
from seqrl.training import FitConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--algos", default="dpg_off,gdcpp")
    parser.add_argument("--lrs", default="1e-2,3e-3")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    st, dev = QUICK_SETTINGS, torch.device("cpu")
    task = MotifTask(train_size=args.size, seed=args.seed)
    r, _ = train_r(task, st, args.seed, dev, False)
    P = GAMPotential(r, MotifFeatures(task.vocab, task.motif, "1001111", task.length))
    fit_lambda(P, task.split("train"), Training1Config(num_samples=20_000, resample_every=None, max_steps=100))
    pool = draw(r, 50_000, base_log_ratio(P))
    z = estimate_log_z(pool.log_ratio)

    def kl(policy) -> float:
        return estimate_divergences(pool.log_q + pool.log_ratio, sequence_log_probs(policy, pool.batch), z.log_z,
                                    pool.log_q)["kl_p_pi"]

    test = task.split("test")
    print(f"|D|={args.size} λ={[round(x, 2) for x in P.lam.tolist()]} log Z={z.log_z:.3f}")
    print(f"r: KL={kl(r):.3f} CE={cross_entropy(r, test):.2f} H={task.entropy():.2f}")
    for algo in args.algos.split(","):
        for lr in (float(x) for x in args.lrs.split(",")):
            torch.manual_seed(0)
            policy = new_policy(task, st)
            policy.load_state_dict(r.state_dict())
            alg = make_algorithm(algo, policy, potential=P, proposal=r, valid=task.split("valid"),
                                 samples_per_step=500, kl_samples=5000)
            t0 = time.perf_counter()
            fit(alg, None, config=FitConfig(max_steps=args.steps, lr=lr, eval_every=10, clip_grad_norm=0.25,
                                            restore_best=False, progress=False, device="cpu"))
            print(f"{algo} lr={lr:g}: KL={kl(policy):.3f} CE={cross_entropy(policy, test):.2f} "
                  f"proposal updates={alg.proposal_updates} wall={time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
