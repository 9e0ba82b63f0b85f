"""Policies: one interface (:class:`Policy`), one sampler, four architectures."""

from __future__ import annotations

from ..registry import Registry
from ..types import Vocab
from .base import AutoregressivePolicy, OverrideHook, Policy, Samples, StepInfo
from .rnn import GRUPolicy, LSTMPolicy, RNNPolicy
from .seq2seq import Seq2SeqPolicy
from .transformer import TransformerPolicy

POLICIES: Registry[type[AutoregressivePolicy]] = Registry("policy")
POLICIES.register("lstm", LSTMPolicy)
POLICIES.register("gru", GRUPolicy)
POLICIES.register("transformer", TransformerPolicy)
POLICIES.register("seq2seq", Seq2SeqPolicy)


def make_policy(
    name: str, vocab: Vocab, max_len: int, source_vocab: Vocab | None = None, **kwargs
) -> AutoregressivePolicy:
    """Build a registered policy; conditional ones also take ``source_vocab``."""
    cls = POLICIES.get(name)
    if cls.is_conditional:
        return cls(vocab, max_len, source_vocab=source_vocab, **kwargs)
    if source_vocab is not None:
        raise ValueError(f"policy {name!r} is unconditional; use 'seq2seq' for a task with a source side")
    return cls(vocab, max_len, **kwargs)


__all__ = [
    "POLICIES",
    "AutoregressivePolicy",
    "GRUPolicy",
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
