"""Any ``transformers`` causal language model as a seqrl policy (optional extra: ``pip install seqrl[hf]``).

π(y_t | y_<t) = softmax(LM(BOS, y_1 … y_{t-1}))[y_t], restricted to the seqrl vocabulary, with the same
masking as every policy (PAD/BOS never emitted, EOS forced at position ``max_len - 1``): so every
algorithm trains it. Nothing is downloaded: the model is built from a config, or passed in by the user
(who may have loaded a pretrained one with ``from_pretrained``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..types import SequenceBatch, Vocab
from .base import AutoregressivePolicy, State

INSTALL_HINT = "pip install seqrl[hf]"


class MissingExtraError(ImportError, ValueError):
    """An optional dependency that is not installed; the message says which extra installs it."""


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # the extra is optional: say how to get it in one line
        raise MissingExtraError(f"the 'hf' policy needs transformers: {INSTALL_HINT} ({err})") from None
    return transformers


_DROPOUT_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout",
                   "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout")


def _model_from_config(config: Any, vocab: Vocab, max_len: int, *, model_type: str, hidden_size: int,
                       num_layers: int, num_heads: int, dropout: float | None) -> Any:
    """A randomly initialised causal LM from ``config`` (a transformers config or its dict), else a small one of
    ``model_type`` sized to the vocabulary; ``dropout`` overrides every dropout rate the config has."""
    transformers = _transformers()
    if config is None:
        config = transformers.AutoConfig.for_model(
            model_type, vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
            num_attention_heads=num_heads, max_position_embeddings=max_len,
            bos_token_id=vocab.bos, eos_token_id=vocab.eos)
    elif isinstance(config, dict):
        settings = dict(config)
        if "model_type" not in settings:
            raise ValueError("config= as a dict needs its 'model_type' (what config.to_dict() gives)")
        config = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
    if dropout is not None:
        for name in _DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, dropout)
    return transformers.AutoModelForCausalLM.from_config(config)


def _id_map(vocab_size: int, model_vocab: int, token_ids: Sequence[int] | None) -> Tensor:
    """The model's id for each seqrl id (identity when the model is sized to the vocabulary)."""
    if token_ids is None:
        if model_vocab != vocab_size:
            raise ValueError(f"the model has {model_vocab} token ids and the vocabulary {vocab_size}: pass "
                             "token_ids= (the model's id for each vocabulary id) or a model sized to the vocabulary")
        return torch.arange(vocab_size)
    ids = torch.as_tensor(list(token_ids), dtype=torch.long)
    if ids.shape != (vocab_size,):
        raise ValueError(f"token_ids has {ids.numel()} ids; expected one per vocabulary id ({vocab_size})")
    if bool((ids < 0).any()) or bool((ids >= model_vocab).any()):
        raise ValueError(f"token_ids must lie in [0, {model_vocab}) (the model's vocabulary)")
    return ids


class HFCausalLMPolicy(AutoregressivePolicy):
    """A ``transformers`` ``AutoModelForCausalLM`` behind the policy interface.

    Sampling feeds one token a step with the model's key/value cache (``past_key_values``); teacher
    forcing runs the whole prefix in one forward pass; beam search reorders the cache. Token ``i`` of the
    seqrl vocabulary is the model's token ``token_ids[i]`` (default: the same id, so the model's
    vocabulary must be the seqrl vocabulary's size).

    Args:
        vocab: target vocabulary.
        max_len: longest sequence, EOS included (the model must have at least ``max_len`` positions).
        model: a built causal LM (e.g. one the user loaded with ``from_pretrained``); else one is built,
            randomly initialised, from ``config``.
        config: a ``transformers`` config, or its ``to_dict()`` (what checkpoints store); default:
            ``model_type`` with the sizes below.
        model_type: architecture for the default config (``AutoConfig.for_model``), e.g. ``"gpt2"``.
        hidden_size, num_layers, num_heads: sizes of the default config.
        dropout: overrides every dropout rate the config has (None: the config's own).
        token_ids: the model's id for each seqrl id (a pretrained tokenizer's ids for the symbols).
    """

    registry_name = "hf"
    _token_ids: Tensor  # a buffer (register_buffer below), declared so that it types as a tensor

    def __init__(
        self,
        vocab: Vocab,
        max_len: int,
        *,
        model: Any = None,
        config: Any = None,
        model_type: str = "gpt2",
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float | None = None,
        token_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(vocab, max_len)
        if model is not None and config is not None:
            raise ValueError("give either model= (a built causal LM) or config=, not both")
        if model is None:
            model = _model_from_config(config, vocab, max_len, model_type=model_type, hidden_size=hidden_size,
                                       num_layers=num_layers, num_heads=num_heads, dropout=dropout)
        elif not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"model= must be a transformers causal LM (an nn.Module with .config), got "
                            f"{type(model).__name__}")
        self.model = model
        ids = _id_map(len(vocab), int(model.config.vocab_size), token_ids)
        self.register_buffer("_token_ids", ids, persistent=False)
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions < max_len:
            raise ValueError(f"the model has {positions} positions; max_len={max_len} needs at least {max_len}")
        self.identity_ids = token_ids is None
        self.config = {"config": model.config.to_dict(),
                       "token_ids": None if token_ids is None else [int(i) for i in ids]}

    def _logits(self, inputs: Tensor, past: Any = None, use_cache: bool = False) -> tuple[Tensor, Any]:
        """The model's logits over the seqrl vocabulary for ``inputs`` (seqrl ids), and its new cache."""
        model_inputs = inputs if self.identity_ids else self._token_ids[inputs]
        out = self.model(input_ids=model_inputs, past_key_values=past, use_cache=use_cache)
        logits = out.logits if self.identity_ids else out.logits.index_select(-1, self._token_ids)
        return logits, getattr(out, "past_key_values", None)

    def teacher_forced_logits(self, batch: SequenceBatch) -> Tensor:
        # One forward pass over BOS, y_1 … y_{T-1}; the causal mask keeps the padding after EOS unseen.
        logits, _ = self._logits(self._shifted_inputs(batch.tokens))
        return logits

    def init_state(self, context: SequenceBatch | None, batch_size: int) -> State:
        return None  # no cache yet: the first step runs on BOS alone

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State]:
        logits, past = self._logits(prev_tokens[:, None], state, use_cache=True)  # the model starts the cache
        return logits[:, -1], past

    def reorder_state(self, state: State, index: Tensor) -> State:
        if state is None:
            return None
        if hasattr(state, "reorder_cache"):  # a transformers Cache: reordered in place
            state.reorder_cache(index)
            return state
        return tuple(tuple(t.index_select(0, index) for t in layer) for layer in state)  # the legacy tuple cache

