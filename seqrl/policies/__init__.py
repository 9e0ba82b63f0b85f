"""Policies: one interface (:class:`Policy`), one sampler, four architectures, and any ``transformers``
causal LM (``hf``, optional extra ``seqrl[hf]``; transformers is imported only when one is built)."""

from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry
from ..types import Vocab
from .base import AutoregressivePolicy, OverrideHook, Policy, Samples, StepInfo
from .hf import HFCausalLMPolicy
from .rnn import GRUPolicy, LSTMPolicy, RNNPolicy
from .seq2seq import Seq2SeqPolicy
from .transformer import TransformerPolicy

POLICIES: Registry[type[AutoregressivePolicy]] = Registry("policy")
POLICIES.register("lstm", LSTMPolicy)
POLICIES.register("gru", GRUPolicy)
POLICIES.register("transformer", TransformerPolicy)
POLICIES.register("seq2seq", Seq2SeqPolicy)
POLICIES.register("hf", HFCausalLMPolicy)  # without transformers installed, building one says "pip install seqrl[hf]"


def make_policy(
    name: str, vocab: Vocab, max_len: int, source_vocab: Vocab | None = None, *, seed: int | None = None, **kwargs
) -> AutoregressivePolicy:
    """Build a registered policy; conditional ones also take ``source_vocab``.

    ``seed`` fixes the initial weights (the same seed gives the same policy) without touching the
    global random state; without it the weights come from torch's global generator."""
    if seed is not None:
        import torch

        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make_policy(name, vocab, max_len, source_vocab, **kwargs)
    cls = POLICIES.get(name)
    if cls.is_conditional:
        # Conditional subclasses (e.g. Seq2SeqPolicy) add ``source_vocab`` to the base signature.
        conditional: Callable[..., AutoregressivePolicy] = cls
        return conditional(vocab, max_len, source_vocab=source_vocab, **kwargs)
    if source_vocab is not None:
        raise ValueError(f"policy {name!r} is unconditional; use 'seq2seq' for a task with a source side")
    return cls(vocab, max_len, **kwargs)


__all__ = [
    "POLICIES",
    "AutoregressivePolicy",
    "GRUPolicy",
    "HFCausalLMPolicy",
    "LSTMPolicy",
    "OverrideHook",
    "Policy",
    "RNNPolicy",
    "Samples",
    "Seq2SeqPolicy",
    "StepInfo",
    "TransformerPolicy",
    "make_policy",
]
