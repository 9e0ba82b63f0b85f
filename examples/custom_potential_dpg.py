"""Any potential → a policy, by off-policy DPG and GDC++.

A potential is any object with ``log_potential(batch) → [B]`` (log P(x), −inf where P(x) = 0);
no base class, no registration. Here: binary strings of at most 5 symbols (63 sequences), with

    log P(x) = 1.5·[x is a palindrome] − 0.5·| |x| − 4 |,   and P(x) = 0 if x holds "0 0",

a soft preference and a hard constraint at once. ``dpg_off`` ([DPG] Alg. 1) and ``gdcpp``
([GDC++] Alg. 1) train an LSTM toward p = P/Z from samples of a proposal q (the initial policy,
replaced by π when π gets better), without ever computing Z. The space is small enough to
enumerate, so the script prints the exact KL(p‖π) before and after, and the mass π leaves on
strings the constraint forbids.

Run:  python examples/custom_potential_dpg.py          (about 15 s on a 2-core CPU)
      python examples/custom_potential_dpg.py --quick  (the reduced form the tests run)
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

import seqrl
from seqrl import exact
from seqrl.bench.stats import format_table
from seqrl.types import SequenceBatch, Vocab

VOCAB = Vocab(["0", "1"])
MAX_LEN = 6  # at most 5 symbols, EOS included in max_len
SEED = 0


class PalindromesWithoutDoubleZero:
    """log P(x) = 1.5·[x is a palindrome] − 0.5·||x| − 4|, −inf if x contains "0 0" (a user's potential)."""

    def log_potential(self, batch: SequenceBatch) -> Tensor:
        symbols_t = batch.tokens.masked_fill(~batch.mask_t | (batch.tokens == VOCAB.eos), VOCAB.pad)  # (B, T)
        n = batch.lengths - 1  # symbols, EOS excluded
        # Reverse each row's first n symbols: position t reads position n − 1 − t.
        t = torch.arange(symbols_t.shape[1], device=batch.device)[None]
        mirror = (n[:, None] - 1 - t).clamp(min=0)
        palindrome = ((symbols_t == symbols_t.gather(1, mirror)) | (t >= n[:, None])).all(1)
        zero = symbols_t == VOCAB.stoi["0"]
        double_zero = (zero[:, 1:] & zero[:, :-1]).any(1)
        log_p = 1.5 * palindrome.float() - 0.5 * (n - 4).abs().float()
        return log_p.masked_fill(double_zero, -math.inf)


@dataclass(frozen=True)
class Row:
    algorithm: str
    kl_start: float
    kl_end: float
    forbidden_mass_end: float
    episodes: int


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (the tests' reduced form)")
    args = parser.parse_args(argv)
    steps = 60 if args.quick else 300

    potential = PalindromesWithoutDoubleZero()
    space = exact.enumerate_sequences(VOCAB, MAX_LEN)
    log_P = seqrl.checked_log_potential(potential, space)  # the library's checks: shape, NaN, support
    p = exact.normalize(log_P)
    forbidden = log_P == -math.inf
    # Validation strings drawn exactly from p: dpg_off replaces q by π when π's CE on them is lower.
    valid = space.index(torch.multinomial(p.float(), 300, replacement=True,
                                          generator=torch.Generator().manual_seed(SEED)))
    initial = seqrl.make_policy("lstm", VOCAB, MAX_LEN, hidden_size=32, num_layers=1, dropout=0.0, seed=SEED)

    rows = []
    for name in ("dpg_off", "gdcpp"):
        policy = copy.deepcopy(initial)
        # each algorithm's own defaults (gdcpp trains unclipped: see its docstring), checking q every 10 steps
        algorithm = seqrl.make_algorithm(name, policy, potential=potential, proposal=initial, valid=valid,
                                         samples_per_step=128, kl_samples=1000, lr=1e-2, check_every=10)
        kl_start = exact.kl(p, exact.policy_distribution(policy, space))
        config = seqrl.FitConfig(max_steps=steps, eval_every=10, seed=SEED, device="cpu", progress=False)
        seqrl.fit(algorithm, None, valid=valid, config=config)
        pi = exact.policy_distribution(policy, space)
        rows.append(Row(name, kl_start, exact.kl(p, pi), float(pi[forbidden].sum()), algorithm.episodes))
    print(f"p = P/Z over {space.batch_size} sequences, {int(forbidden.sum())} of them forbidden (P = 0); "
          f"{steps} steps each")
    print(format_table(["algorithm", "KL(p‖π) start", "KL(p‖π) end", "π(P = 0) end", "episodes"],
                       [[r.algorithm, r.kl_start, r.kl_end, r.forbidden_mass_end, r.episodes] for r in rows]))
    return rows


if __name__ == "__main__":
    main()
