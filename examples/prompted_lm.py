"""A language model saved on disk, a prompts file and a text reward: KL-control and GDC++ side by side.

What a user of TRL or disco brings: a causal LM and its tokenizer in a local folder (``save_pretrained``'s
layout), prompts, and a function of the decoded completions (TRL's reward signature). Here the model is a small
random GPT-2 over 6 words that the script writes itself (nothing is downloaded; give ``--model DIR`` for your
own), so that every completion of at most 2 words can be enumerated and each trained π(·|x) compared exactly
with its target:

* ``kl_control`` ([GDC++] Eq. 2; Ziegler et al. 2019) with r(x, y) = 0.3·[y says "good"] and its default β = 0.1
  moves each π(·|x) toward p_z(·|x) ∝ a(·|x)·e^{r/β}: exact KL(π‖p_z) per prompt, before and after;
* ``gdcpp`` ([GDC++] Alg. 1) toward p_x ∝ a(·|x)·[y says "good"] (the scorer as a pointwise constraint,
  disco's ``base * scorer``): exact KL(p_x‖π) per prompt, before and after;
* ``cdpg`` (Korbak et al. 2022) toward the same p_x. GDC++'s one running Ẑ, pooled over prompts, weighs each
  prompt's update by Z_x/Z, so the prompt where "good" is rarest under a learns slowest; CDPG normalizes each
  prompt by its own Ẑ_x.

Every trained model is written with ``save_pretrained`` (``OUT/kl_control``, ``OUT/gdcpp``, ``OUT/cdpg``), loadable by
``AutoModelForCausalLM.from_pretrained``. The same runs from the command line:

    seqrl train kl_control --model DIR --prompts prompts.txt --reward prompted_lm:says_good_a_little \\
        --policy-set max_len=3 --steps 60 --out runs/kl
    seqrl train gdcpp --model DIR --prompts prompts.txt --scorer prompted_lm:says_good \\
        --policy-set max_len=3 --steps 120 --lr 3e-3 --out runs/gdcpp

Needs ``pip install seqrl[hf]``.

Run:  python examples/prompted_lm.py [--model DIR] [--out DIR]   (about 15 s on a 2-core CPU)
      python examples/prompted_lm.py --quick                      (the reduced form the tests run)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import seqrl
from seqrl import exact
from seqrl.bench.stats import format_table

WORDS = ["the", "movie", "plot", "was", "good", "bad"]
PROMPTS = ["the movie was", "the plot was", "the"]
MAX_LEN = 3  # at most 2 words, then EOS: 43 completions per prompt
REWARD_SCALE = 0.3


def says_good(completions: list[str], **kwargs) -> list[float]:
    """b(x, y) = [the completion says "good"] (TRL's signature: the completions' texts, prompt excluded)."""
    return [float("good" in text.split()) for text in completions]


def says_good_a_little(completions: list[str], **kwargs) -> list[float]:
    """r(x, y) = 0.3·[the completion says "good"]: with β = 0.1 the target weighs it e³ ≈ 20 times."""
    return [REWARD_SCALE * v for v in says_good(completions)]


@dataclass
class Row:
    algorithm: str
    target: str
    direction: str
    start: list[float]
    end: list[float]
    saved: Path


def per_prompt_kl(algorithm, log_target_fn, space, prompts, reverse: bool) -> list[float]:
    pis = exact.conditional_distributions(algorithm.policy, space, prompts)
    targets = exact.conditional_targets(log_target_fn, space, prompts)
    return [exact.kl(pi, t) if reverse else exact.kl(t, pi) for pi, t in zip(pis, targets)]


def run(name: str, model_dir: Path, prompts_file: Path, out: Path, steps: int) -> Row:
    from seqrl.ebm import ScoredBase
    from seqrl.policies.hf import HFCausalLMPolicy
    from seqrl.prompts import read_prompts
    from seqrl.rewards.base import FunctionReward

    policy = HFCausalLMPolicy.from_pretrained(model_dir, max_len=MAX_LEN, dropout=0.0)
    prompts = read_prompts(prompts_file, policy.vocab)
    space = exact.enumerate_sequences(policy.vocab, MAX_LEN)
    if name == "kl_control":
        reward = FunctionReward(says_good_a_little, "says_good_a_little", vocab=policy.vocab)
        algorithm = seqrl.make_algorithm("kl_control", policy, reward=reward, prompts=prompts)
        target, reverse = algorithm.implied_potential().log_potential, True
        text = "a·e^{r/β}"
    else:
        scorer = FunctionReward(says_good, "says_good", vocab=policy.vocab)
        potential = ScoredBase(policy.frozen_copy().eval(), scorer)
        algorithm = seqrl.make_algorithm(name, policy, potential=potential, proposal=policy, prompts=prompts,
                                         lr=3e-3)
        target, reverse = potential.log_potential, False
        text = 'a·[says "good"]'
    start = per_prompt_kl(algorithm, target, space, prompts, reverse)
    seqrl.fit(algorithm, config=seqrl.FitConfig(max_steps=steps, progress=False, seed=0, device="cpu"))
    end = per_prompt_kl(algorithm, target, space, prompts, reverse)
    saved = algorithm.policy.save_pretrained(out / name)
    return Row(name, text, "KL(π‖p_z)" if reverse else "KL(p_x‖π)", start, end, saved)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a local causal LM and its tokenizer (default: a new toy one)")
    parser.add_argument("--out", type=Path, help="where the trained models go (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="fewer steps (the tests' reduced form)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("transformers") is None:
        sys.exit("this example needs transformers: pip install seqrl[hf]")
    from transformers.utils import logging

    from seqrl.policies.toy_lm import write_word_lm

    logging.disable_progress_bar()  # its loading/writing bars would bury the table

    work = Path(tempfile.mkdtemp(prefix="seqrl-prompted-lm-"))
    model_dir = args.model or write_word_lm(work / "start", WORDS, seed=1)
    prompts_file = work / "prompts.txt"
    prompts_file.write_text("\n".join(PROMPTS) + "\n")
    out = args.out or work / "trained"
    rows = [run("kl_control", model_dir, prompts_file, out, 30 if args.quick else 60),
            *[run(name, model_dir, prompts_file, out, 60 if args.quick else 200) for name in ("gdcpp", "cdpg")]]
    print(format_table(["algorithm", "target", "KL", *[f"{p!r}: start → end" for p in PROMPTS], "saved"],
                       [[r.algorithm, r.target, r.direction,
                         *[f"{s:.3f} → {e:.3f}" for s, e in zip(r.start, r.end)], str(r.saved)] for r in rows]))
    return rows


if __name__ == "__main__":
    main()
