"""Memory of a policy and its frozen copy (DPG's proposal q, KL-control's base a), with and without LoRA.

Without LoRA, ``frozen_copy`` deep-copies the model; with LoRA (``lora=``, extra ``seqrl[peft]``) the copy is a
second, frozen adapter on the same model, so the base weights exist once. Counted: the bytes of the distinct
storages behind the parameters and buffers of the policy and its copy (a storage shared by both counted once),
on a GPT-2 built from a config (random weights, nothing downloaded) and saved/loaded as a real one is.

Run:  python benchmarks/hf_lora_memory.py            (GPT-2 small's shape: 124M parameters, about 30 s)
      python benchmarks/hf_lora_memory.py --layers 2 --width 128 --words 1000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn


def storage_bytes(*policies: nn.Module) -> int:
    """Bytes of the distinct storages behind the policies' parameters and buffers (their models' too, a model
    shared by several counted once)."""
    seen: dict[int, int] = {}
    for policy in policies:
        model = getattr(policy, "model", None)
        tensors = [*policy.parameters(), *policy.buffers()]
        if isinstance(model, nn.Module):
            tensors += [*model.parameters(), *model.buffers()]
        for tensor in tensors:
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def plain_parameters(directory: str) -> list[torch.Tensor]:
    import transformers

    return list(transformers.AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).parameters())


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--words", type=int, default=50257)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r (on GPT-2's c_attn, peft's default)")
    args = parser.parse_args(argv)
    import transformers

    from seqrl.policies.hf import HFCausalLMPolicy
    from seqrl.policies.toy_lm import write_word_lm

    with tempfile.TemporaryDirectory() as tmp:
        write_word_lm(Path(tmp), [f"w{i}" for i in range(args.words - 1)], width=args.width, layers=args.layers,
                      heads=args.heads, positions=1024, init_range=0.02)
        rows = {}
        plain = HFCausalLMPolicy.from_pretrained(tmp, max_len=32)
        rows["policy"] = storage_bytes(plain)
        rows["policy + frozen copy"] = storage_bytes(plain, plain.frozen_copy())
        del plain
        lora = HFCausalLMPolicy.from_pretrained(tmp, max_len=32, lora={"r": args.rank, "lora_alpha": 2 * args.rank})
        rows["LoRA policy"] = storage_bytes(lora)
        rows["LoRA policy + frozen copy"] = storage_bytes(lora, lora.frozen_copy())
        trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
        params = sum(p.numel() for p in plain_parameters(tmp))
    print(f"GPT-2 {args.layers}×{args.width}, {args.words} words: {params / 1e6:.1f}M parameters; LoRA r={args.rank} "
          f"on c_attn: {trainable / 1e6:.3f}M trainable; float32, torch {torch.__version__}, transformers "
          f"{transformers.__version__}")
    for name, value in rows.items():
        print(f"  {name:<28} {value / 2**20:9.1f} MiB")
    print(f"  frozen copy adds: {(rows['policy + frozen copy'] - rows['policy']) / 2**20:.1f} MiB without LoRA, "
          f"{(rows['LoRA policy + frozen copy'] - rows['LoRA policy']) / 2**20:.2f} MiB with LoRA")
    return rows


if __name__ == "__main__":
    main()
