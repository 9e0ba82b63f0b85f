"""Prompted sampling speed: seqrl's ``HFCausalLMPolicy.sample(1, prompts)`` against transformers' own
``model.generate`` on the same model, the same left-padded batch of prompts and the same number of new tokens,
both sampling from the plain softmax (no top-k/top-p, temperature 1).

The model is a GPT-2 built from a config (random weights, nothing downloaded) with a word-level tokenizer of
``--words`` words, saved to a temporary directory and loaded back with ``HFCausalLMPolicy.from_pretrained`` (so
seqrl works through its tokenizer vocabulary and its id map, as it does for a real model). ``generate`` gets
``max_new_tokens = N`` and no EOS, so that it never stops early; seqrl runs ``max_len = N`` steps (it never stops
early either): both do one prompt pass and N − 1 one-token passes with the key/value cache. Timings are the
median of ``--repeats`` interleaved runs after a warm-up; the ratio is seqrl's tokens/s over generate's (≥ 1:
seqrl is at least as fast).

Run:  OMP_NUM_THREADS=1 python benchmarks/hf_generate_speed.py             (about a minute on one CPU thread)
      python benchmarks/hf_generate_speed.py --device cuda --batch 64 --threads 0
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_model(directory: Path, words: int, layers: int, width: int, heads: int, positions: int) -> None:
    """A GPT-2 of the given size and a word-level tokenizer over ``words`` words, saved to ``directory``."""
    from seqrl.policies.toy_lm import write_word_lm

    write_word_lm(directory, [f"w{i}" for i in range(words - 1)], width=width, layers=layers, heads=heads,
                  positions=positions, init_range=0.02)


def prompts_of(batch: int, shortest: int, longest: int, words: int, seed: int = 0) -> list[str]:
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (batch,), generator=rng).tolist()
    return [" ".join(f"w{int(i)}" for i in torch.randint(0, words - 1, (n,), generator=rng)) for n in lengths]


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="prompts in the batch")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per prompt")
    parser.add_argument("--prompt-lengths", type=int, nargs=2, default=(8, 32), metavar=("MIN", "MAX"))
    parser.add_argument("--words", type=int, default=8000, help="vocabulary size")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        import transformers
    except ImportError:
        sys.exit("hf_generate_speed.py needs transformers: pip install seqrl[hf]")
    from seqrl.policies.hf import HFCausalLMPolicy

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    positions = args.prompt_lengths[1] + args.new_tokens
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), args.words, args.layers, args.width, args.heads, positions)
        policy = HFCausalLMPolicy.from_pretrained(tmp, max_len=args.new_tokens).to(device).eval()
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp, local_files_only=True).to(device).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(tmp, local_files_only=True)
    texts = prompts_of(args.batch, *args.prompt_lengths, args.words)
    context = policy.vocab.encode_prompts(texts, device=device)
    tokenizer.pad_token, tokenizer.padding_side = tokenizer.eos_token, "left"
    encoded = tokenizer(texts, return_tensors="pt", padding=True).to(device)
    # No EOS for generate, so that it runs all N steps without a logits processor holding EOS back (seqrl never
    # stops early either); plain sampling: no top-k (generate's default is 50), no top-p, temperature 1.
    model.generation_config.eos_token_id = None
    settings = dict(do_sample=True, max_new_tokens=args.new_tokens, top_k=0, top_p=1.0, temperature=1.0,
                    pad_token_id=tokenizer.eos_token_id)

    def ours() -> None:
        with torch.no_grad():
            policy.sample(1, context)

    def theirs() -> None:
        out = model.generate(**encoded, **settings)
        assert out.shape[1] == encoded["input_ids"].shape[1] + args.new_tokens

    ours(), theirs()  # warm-up
    times: dict[str, list[float]] = {"seqrl": [], "generate": []}
    for _ in range(args.repeats):
        times["seqrl"].append(timed(ours, device))
        times["generate"].append(timed(theirs, device))
    tokens = args.batch * args.new_tokens
    median = {name: statistics.median(t) for name, t in times.items()}
    params = sum(p.numel() for p in model.parameters())
    print(f"GPT-2 {args.layers}×{args.width}, {args.words} words ({params / 1e6:.1f}M parameters), batch {args.batch}, "
          f"prompts of {args.prompt_lengths[0]}–{args.prompt_lengths[1]} tokens (left-padded), {args.new_tokens} new "
          f"tokens, sampling; {device}, {torch.get_num_threads()} thread(s), transformers {transformers.__version__}, "
          f"torch {torch.__version__}; median of {args.repeats}")
    for name in ("seqrl", "generate"):
        print(f"  {name:<9} {median[name]:.3f} s   {tokens / median[name]:8.0f} tokens/s")
    ratio = median["generate"] / median["seqrl"]
    print(f"  ratio (seqrl tokens/s ÷ generate tokens/s): {ratio:.2f}")
    return {"seqrl_s": median["seqrl"], "generate_s": median["generate"], "ratio": ratio}


if __name__ == "__main__":
    main()
