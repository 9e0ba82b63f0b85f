"""A tiny GPT-2 and its word-level tokenizer, built from configs and saved with save_pretrained (nothing is
downloaded): the language model the HF tests enumerate exactly."""

from __future__ import annotations

from seqrl.policies.toy_lm import word_tokenizer, write_word_lm

MAX_LEN = 4  # completions of at most 3 symbols + EOS over {a, b, c}: 40 sequences
WORDS = ["a", "b", "c"]
GPT2_WORDS = "gpt2"
LLAMA_WORDS = "llama"


def make_tokenizer(layout: str = GPT2_WORDS):
    """GPT-2's layout (one <|endoftext|> for everything) or Llama's (pad/bos/eos, and a BOS added to every text)."""
    return word_tokenizer(WORDS, layout)  # type: ignore[arg-type]


def write_tiny_lm(directory, *, dropout: float = 0.0, seed: int = 0, words: str = GPT2_WORDS, n_positions: int = 16):
    """A 2-layer GPT-2 (large initial weights, so that its distributions depend on prompt and position) and its
    tokenizer, saved with save_pretrained into ``directory``."""
    return write_word_lm(directory, WORDS, layout=words, dropout=dropout, seed=seed,  # type: ignore[arg-type]
                         positions=n_positions)
