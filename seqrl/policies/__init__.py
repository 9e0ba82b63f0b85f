"""Policies: one interface (:class:`Policy`), one sampler, four architectures, and any ``transformers``
causal LM (``hf``, optional extra ``seqrl[hf]``; transformers is imported only when one is built)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry
from ..types import Vocab
from .base import SAMPLING_KEYS, AutoregressivePolicy, OverrideHook, Policy, Samples, SamplingOptions, StepInfo
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

    ``temperature``, ``top_k`` and ``top_p`` are the sampling options of every policy
    (:class:`~seqrl.policies.base.SamplingOptions`, set after construction); the other settings go to its class.

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
    if not (isinstance(cls, type) and issubclass(cls, AutoregressivePolicy)):
        raise TypeError(f"policy {name!r} is {type(cls).__name__} {str(cls)[:60]!r}, not an AutoregressivePolicy "
                        "subclass")
    sampling = {key: kwargs.pop(key) for key in SAMPLING_KEYS if key in kwargs}
    SamplingOptions(**sampling)  # checked before any weight is allocated
    check_policy_settings(name, max_len, kwargs)
    check_policy_size(name, vocab, max_len, source_vocab, kwargs)
    if cls.is_conditional:
        # Conditional subclasses (e.g. Seq2SeqPolicy) add ``source_vocab`` to the base signature.
        conditional: Callable[..., AutoregressivePolicy] = cls
        return conditional(vocab, max_len, source_vocab=source_vocab, **kwargs).set_sampling(**sampling)
    if source_vocab is not None:
        raise ValueError(f"policy {name!r} is unconditional; use 'seq2seq' for a task with a source side")
    return cls(vocab, max_len, **kwargs).set_sampling(**sampling)


MAX_PARAMETERS = 2_000_000_000
"""Most parameters a built-in policy may have (8 GiB in float32): larger settings are refused before allocation."""
MAX_WIDTH = 65_536
"""Largest hidden size or embedding dimension of a built-in policy."""
MAX_LAYERS = 256
MAX_LEN = 100_000


COUNTS = ("hidden_size", "embedding_dim", "num_heads", "ffn_size", "num_layers")


def check_policy_settings(name: str, max_len: Any, settings: dict) -> None:
    """The built-in policies' numbers, before anything is built: ``max_len`` and the sizes (:data:`COUNTS`) are
    integers ≥ 1 (``embedding_dim`` may be None), ``dropout`` a probability below 1 (or None)."""
    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not whole(max_len):
        raise ValueError(f"policy {name}: max_len must be an integer ≥ 1 (tokens, EOS included), got {max_len!r}")
    for key in COUNTS:
        value = settings.get(key)
        if key in settings and not whole(value) and not (key == "embedding_dim" and value is None):
            raise ValueError(f"policy {name}: {key} must be an integer ≥ 1, got {value!r}")
    dropout = settings.get("dropout")
    if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, int | float)
                                or not 0 <= dropout < 1):
        raise ValueError(f"policy {name}: dropout must be in [0, 1), got {dropout!r}")


def check_policy_size(name: str, vocab: Vocab, max_len: int, source_vocab: Vocab | None,
                      settings: dict) -> None:
    """Refuse sizes that would not fit before any weight is allocated, naming the setting and the figure: widths
    ≤ :data:`MAX_WIDTH`, layers ≤ :data:`MAX_LAYERS`, ``max_len`` ≤ :data:`MAX_LEN`, and the parameter count
    (estimated as layers·4·h·(h + e) for the recurrent body plus the embeddings and the output layer) ≤
    :data:`MAX_PARAMETERS`."""
    from ..config import check_size

    if isinstance(max_len, int) and not isinstance(max_len, bool):
        check_size(f"policy {name} max_len", max_len, MAX_LEN, unit=" tokens")
    dims = {k: v for k, v in settings.items() if k in ("hidden_size", "embedding_dim", "num_heads", "ffn_size")
            and isinstance(v, int) and not isinstance(v, bool)}
    for key, value in dims.items():
        check_size(f"policy {name} {key}", value, MAX_WIDTH)
    layers = settings.get("num_layers", 1)
    if isinstance(layers, int) and not isinstance(layers, bool):
        check_size(f"policy {name} num_layers", layers, MAX_LAYERS)
    else:
        layers = 1
    h = max(dims.get("hidden_size", 1), 1)
    e = dims.get("embedding_dim") or h
    words = len(vocab) + (len(source_vocab) if source_vocab is not None else 0)
    estimate = layers * 4 * h * (h + e) + words * (e + h)
    check_size(f"policy {name}'s estimated parameter count", estimate, MAX_PARAMETERS, bytes_each=4)


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
    "SamplingOptions",
    "Seq2SeqPolicy",
    "StepInfo",
    "TransformerPolicy",
    "check_policy_size",
    "make_policy",
]
