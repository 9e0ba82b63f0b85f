"""A small random causal language model and its word-level tokenizer, built from configs and written with
``save_pretrained`` (needs ``seqrl[hf]``; nothing is downloaded): a local model directory to try ``--model DIR``,
the examples and the tests on, whose completions are few enough to enumerate exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

GPT2_SPECIALS = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}
LLAMA_SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}


def word_tokenizer(words: list[str], layout: Literal["gpt2", "llama"] = "gpt2") -> Any:
    """A fast tokenizer that splits on whitespace and knows ``words`` (an unknown word maps to the first special).

    ``"gpt2"``: one ``<|endoftext|>`` (id 0) is EOS and BOS, no PAD, nothing added to a text. ``"llama"``:
    ``<pad>``, ``<s>``, ``</s>`` (ids 0–2), and ``<s>`` added before every text, as Llama's tokenizer does."""
    import tokenizers
    import transformers

    specials = GPT2_SPECIALS if layout == "gpt2" else LLAMA_SPECIALS
    names = list(dict.fromkeys(specials.values()))
    vocabulary = {name: i for i, name in enumerate([*names, *words])}
    if len(vocabulary) != len(names) + len(words):
        raise ValueError(f"words must be distinct and not special tokens {names}, got {words}")
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocabulary, unk_token=names[0]))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    if layout == "llama":
        backend.post_processor = tokenizers.processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", vocabulary["<s>"])])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **specials)


def write_word_lm(directory: str | Path, words: list[str], *, layout: Literal["gpt2", "llama"] = "gpt2",
                  width: int = 16, layers: int = 2, heads: int = 2, positions: int = 16, dropout: float = 0.0,
                  init_range: float = 0.4, seed: int = 0) -> Path:
    """A randomly initialized GPT-2 over :func:`word_tokenizer`'s vocabulary, saved with its tokenizer into
    ``directory``. ``init_range`` (the weights' standard deviation) is large by default so that the untrained
    model's next-token distributions differ by prompt and position (GPT-2's own 0.02 makes them near uniform)."""
    import transformers

    tokenizer = word_tokenizer(words, layout)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=width, n_layer=layers,
                                     n_head=heads, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                                     initializer_range=init_range, bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):  # the caller's random streams are left as they were
        torch.manual_seed(seed)
        model = transformers.GPT2LMHeadModel(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


__all__ = ["word_tokenizer", "write_word_lm"]
