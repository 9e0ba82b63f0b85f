"""The headline GAM reproduction ([DPG] Sec. 4, Table 1) from Python, step by step.

The same pieces ``seqrl bench gam`` runs (seqrl/bench/gam.py), called one at a time:

1. the motif task: binary strings of length n that contain a motif m, sampled exactly (``MotifTask``);
2. r, an LSTM trained by MLE on D with early stopping on V (``train_r``);
3. Training-1: the GAM P_λ(x) = r(x)·exp(λ·φ(x)), λ fitted by SNIS so that E_{p_λ} φ = E_D φ (``fit_gam``);
4. Training-2: P_λ turned into a policy π by distillation (rejection sampling + MLE), off-policy DPG
   ([DPG] Alg. 1) and GDC++ ([GDC++] Alg. 1), each starting from r, with the suite's settings
   (``training2``: the suite's Training-2 row, built by the one builder as every run is).

It prints CE(T, ·) on the test set (nats per sequence; the lower bound is H(p_true) = log N(n, m)),
the motif frequency of samples, the estimated KL(p_λ‖π) and [DPG] Table 1's ratios (``table1``).
By default: the paper's motif 1000101000101, n = 30, |D| = 500, ``seqrl bench gam --quick``'s settings
(``QUICK_SETTINGS``: about 4 minutes of CPU; its rows match the |D| = 500 rows of the quick grid in
docs/benchmarks.md). ``--quick`` is tiny (motif 10001, n = 10): its space of 2047 strings is small
enough to enumerate, so the KL(p_λ‖·) column is exact there.

Run:  python examples/gam_motif.py [--size 500] [--device cpu|cuda|auto]
      python examples/gam_motif.py --quick     (the reduced form the tests run)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

import seqrl
from seqrl import exact
from seqrl.bench.gam import QUICK_SETTINGS, GamSettings, fit_gam, table1, train_r, training2
from seqrl.bench.stats import format_table
from seqrl.bench.suite import RunRecord
from seqrl.envs import MotifTask
from seqrl.metrics import cross_entropy, motif_frequency, sample_in_chunks, sequence_log_probs

SEED = 1234
MASK = "1001111"  # features: motif, first bit, and the three distractor patterns ([DPG] Sec. 4)
TRAINING2 = ("distill", "dpg_off", "gdcpp")
TINY = GamSettings(length=10, test_size=500, hidden_size=16, num_layers=1, dropout=0.0, batch_size=100,
                   max_epochs=10, patience=3, motif_samples=500, snis_samples=2000, snis_resample_every=None,
                   training1_steps=50, log_z_samples=5000, distill_samples=500, dpg_steps=30,
                   episodes_per_step=100, eval_every=5, kl_samples=500)
"""--quick: a space of 2¹¹ − 1 strings, trained in seconds."""


@dataclass(frozen=True)
class Result:
    records: list[RunRecord]
    """One per row (``mle`` is r), with the metrics ``seqrl bench gam`` records."""
    exact_kl: dict[str, float]
    """Exact KL(p_λ‖π) per row, when the space is small enough to enumerate (else empty)."""


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny: motif 10001, n = 10 (the tests' reduced form)")
    parser.add_argument("--size", type=int, default=500, help="|D|, the training set size (default 500)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    args = parser.parse_args(argv)
    settings = TINY if args.quick else QUICK_SETTINGS
    motif = "10001" if args.quick else "1000101000101"
    device = seqrl.resolve_device(args.device)

    # 1. the task, 2. r by MLE
    task = MotifTask(motif, settings.length, train_size=args.size, test_size=settings.test_size, seed=SEED)
    test = task.split("test")
    r, _ = train_r(task, settings, SEED, device, progress=False)
    generator = torch.Generator(device=device).manual_seed(SEED)
    base = {"ce_r": cross_entropy(r, test), "h_true": task.entropy(),
            "motif_freq_r": motif_frequency(sample_in_chunks(r, settings.motif_samples, generator=generator),
                                            task.vocab, motif)}
    # 3. Training-1
    gam = fit_gam(task, r, MASK, settings, SEED, torch.Generator(device=device).manual_seed(SEED + 1))
    log_p_test = sequence_log_probs(r, test) + gam.potential.log_ratio_to_base(test.to(device)).cpu()
    base["ce_plambda"] = float(-log_p_test.double().mean() + gam.log_z.log_z)
    print(f"motif {motif}, n = {settings.length}, |D| = {args.size}: CE(T, r) = {base['ce_r']:.3f}, "
          f"CE(T, p_λ) = {base['ce_plambda']:.3f}, H(p_true) = {base['h_true']:.3f} nats")
    print(format_table(["feature", "λ", "E_D φ", "E_p_λ φ (SNIS)"],
                       [[n, float(lam), float(d), float(m)] for n, lam, d, m in
                        zip(gam.potential.features.names, gam.training1.lam, gam.training1.data_moments,
                            gam.training1.model_moments)]))

    # 4. Training-2, each algorithm from r
    params = {"motif": motif, "features": MASK, "dataset_size": args.size}
    policies = {"mle": r}
    records = [RunRecord("mle", SEED, params, {**base, "ce_test": base["ce_r"], "motif_freq": base["motif_freq_r"],
                                               **gam.divergences(r)})]
    for name in TRAINING2:
        policy, algorithm = training2(name, task, r, gam, settings, device=device, seed=SEED)
        summary = algorithm.summary()
        policies[name] = policy
        samples = sample_in_chunks(policy, settings.motif_samples, generator=generator)
        records.append(RunRecord(name, SEED, params, {**base, **summary, **gam.divergences(policy),
                                                      "ce_test": cross_entropy(policy, test),
                                                      "motif_freq": motif_frequency(samples, task.vocab, motif)}))

    exact_kl: dict[str, float] = {}
    if settings.length <= 12:  # small enough to enumerate: KL(p_λ‖π) exactly
        space = exact.enumerate_sequences(task.vocab, task.max_len)
        p = exact.normalize(gam.potential.log_potential(space.to(device)).cpu())
        exact_kl = {name: exact.kl(p, exact.policy_distribution(policy, space)) for name, policy in policies.items()}
    header = ["algorithm", "CE(T,π)", "motif freq", "KL(p_λ‖π) est.", *(["KL(p_λ‖π) exact"] if exact_kl else []),
              "episodes"]
    print(format_table(header, [[("r (mle)" if rec.algorithm == "mle" else rec.algorithm), rec.metrics["ce_test"],
                                 rec.metrics["motif_freq"], rec.metrics["kl_p_pi"],
                                 *([exact_kl[rec.algorithm]] if exact_kl else []),
                                 int(rec.metrics.get("episodes", 0))] for rec in records]))
    print("\n[DPG] Table 1 (dpg = dpg_off, dis = distill):\n" + table1(records, "dpg_off", "distill"))
    return Result(records, exact_kl)


if __name__ == "__main__":
    main()
