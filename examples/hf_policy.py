"""A ``transformers`` causal language model as a seqrl policy, trained by DPG and KL-control.

``seqrl.policies.hf`` wraps any ``AutoModelForCausalLM`` behind the policy interface (sampling with a
key/value cache, teacher-forced log-distributions, EOS forced at ``max_len``), so every algorithm
trains it. Here a tiny GPT-2 is built from a ``GPT2Config`` with random weights over a seqrl vocabulary
(nothing is downloaded; a saved model and its tokenizer load with ``HFCausalLMPolicy.from_pretrained(dir,
max_len=…)``, the tokenizer giving the vocabulary: examples/prompted_lm.py), over the 40 sequences of at most
3 symbols from {a, b, c}, and trained

* by ``dpg`` ([DPG] Eq. 5) toward p = P/Z, log P(x) = 1.5·#a(x) − 0.5·|x|: exact KL(p‖π) before/after;
* by ``kl_control`` ([GDC++] Eq. 2) with reward r(x) = #a(x) and β = 0.5, toward its implied target
  p_z ∝ a·exp(r/β) (a = the initial GPT-2): exact KL(π‖p_z) before/after, the direction it minimizes.

Needs the optional extra: ``pip install seqrl[hf]`` (the script says so and exits when it is missing).

Run:  python examples/hf_policy.py          (about 10 s on a 2-core CPU)
      python examples/hf_policy.py --quick  (the reduced form the tests run)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from dataclasses import dataclass

from torch import Tensor

import seqrl
from seqrl import exact
from seqrl.bench.stats import format_table
from seqrl.policies.hf import HFCausalLMPolicy
from seqrl.types import SequenceBatch, Vocab

VOCAB = Vocab(["a", "b", "c"])  # ids: PAD 0, BOS 1, EOS 2, a 3, b 4, c 5
MAX_LEN = 4
BETA = 0.5
SEED = 0


class PreferA:
    """log P(x) = 1.5·#a(x) − 0.5·|x| (a potential: any object with ``log_potential``)."""

    def log_potential(self, batch: SequenceBatch) -> Tensor:
        return 1.5 * (batch.tokens == VOCAB.stoi["a"]).sum(1).float() - 0.5 * batch.lengths.float()


class CountA(seqrl.rewards.BaseReward):
    """r(x) = #a(x): scores a sequence alone, as KL-control (which samples its own sequences) needs."""

    name, needs_reference = "count_a", False

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        return ((hyps.tokens == VOCAB.stoi["a"]) & hyps.mask_t).sum(1).float()


@dataclass(frozen=True)
class Row:
    algorithm: str
    target: str
    direction: str
    kl_start: float
    kl_end: float


def tiny_gpt2() -> HFCausalLMPolicy:
    """A 1-layer GPT-2 sized to the vocabulary, random weights from seed 0, no dropout."""
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=len(VOCAB), n_positions=MAX_LEN, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=VOCAB.bos, eos_token_id=VOCAB.eos)
    policy = seqrl.make_policy("hf", VOCAB, MAX_LEN, config=config, dropout=0.0, seed=SEED)
    assert isinstance(policy, HFCausalLMPolicy)
    return policy


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (the tests' reduced form)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("transformers") is None:
        sys.exit("hf_policy.py needs transformers, the optional extra of seqrl: pip install seqrl[hf]")
    steps = 40 if args.quick else 200

    space = exact.enumerate_sequences(VOCAB, MAX_LEN)
    initial = tiny_gpt2()
    config = seqrl.FitConfig(max_steps=steps, seed=SEED, device="cpu", progress=False)
    rows = []

    policy = copy.deepcopy(initial)
    p = exact.normalize(PreferA().log_potential(space))
    kl_start = exact.kl(p, exact.policy_distribution(policy, space))
    dpg = seqrl.make_algorithm("dpg", policy, potential=PreferA(), samples_per_step=64, lr=1e-2)
    seqrl.fit(dpg, None, config=config)
    rows.append(Row("dpg", "p = P/Z", "KL(p‖π)", kl_start, exact.kl(p, exact.policy_distribution(policy, space))))

    policy = copy.deepcopy(initial)
    algorithm = seqrl.make_algorithm("kl_control", policy, reward=CountA(VOCAB), beta=BETA, samples_per_step=64,
                                     lr=1e-2)
    p_z = exact.normalize(algorithm.implied_potential().log_potential(space))  # a = π at the start
    kl_start = exact.kl(exact.policy_distribution(policy, space), p_z)
    seqrl.fit(algorithm, None, config=config)
    rows.append(Row("kl_control", f"p_z ∝ a·exp(r/β), β={BETA:g}", "KL(π‖p_z)", kl_start,
                    exact.kl(exact.policy_distribution(policy, space), p_z)))

    print(f"{type(initial.model).__name__} ({sum(q.numel() for q in initial.parameters())} parameters) over "
          f"{space.batch_size} sequences, {steps} steps each")
    print(format_table(["algorithm", "exact target", "KL", "start", "end"],
                       [[r.algorithm, r.target, r.direction, r.kl_start, r.kl_end] for r in rows]))
    return rows


if __name__ == "__main__":
    main()
