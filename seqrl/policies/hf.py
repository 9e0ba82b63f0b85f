"""Any ``transformers`` causal language model as a seqrl policy (optional extra: ``pip install seqrl[hf]``).

π(y_t | x, y_<t) = softmax(LM(x, y_1 … y_{t-1}))[y_t], restricted to the seqrl vocabulary, with the same
masking as every policy (PAD/BOS never emitted, EOS forced at position ``max_len - 1``): so every algorithm
trains it. ``x`` is an optional prompt (``SequenceBatch.context``, in the policy's own vocabulary); without one
the model starts from BOS. Nothing is ever downloaded: a model is built from a config, passed in, or loaded
from a local directory with :meth:`HFCausalLMPolicy.from_pretrained` (its tokenizer gives the vocabulary:
:func:`tokenizer_vocab`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..types import BatchError, SequenceBatch, TokenizerVocab, Vocab
from .base import SAMPLING_KEYS, AutoregressivePolicy, State, inverse_cdf_draw
from .hf_lora import (
    LoraSpec,
    MissingExtraError,
    adapter_state,
    add_frozen_adapter,
    apply_lora,
    copy_adapter,
    drop_frozen_adapters,
    ignore_frozen_adapters,
    is_lora,
    lora_settings,
    model_mode,
    save_merged,
    selected_adapter,
    tuner_layers,
)

INSTALL_HINT = "pip install seqrl[hf]"

def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # the extra is optional: say how to get it in one line
        raise MissingExtraError(f"the 'hf' policy needs transformers: {INSTALL_HINT} ({err})") from None
    return transformers


def tokenizer_vocab(tokenizer: Any) -> TokenizerVocab:
    """The seqrl vocabulary of a Hugging Face tokenizer: ids 0/1/2 (PAD/BOS/EOS, as seqrl needs) stand for the
    tokenizer's pad/bos/eos ids (its eos where it has no pad or bos: GPT-2's ``<|endoftext|>`` is all three), ids
    3, 4, … for its other ids in increasing order. It carries ``model_ids`` (LongTensor, seqrl id → model id)
    and the tokenizer, ``decode(batch_or_rows) -> list[str]`` (each row's text, EOS/PAD dropped) and
    ``encode_prompts(texts) -> SequenceBatch`` (each text's ids exactly, nothing added). See
    :class:`~seqrl.types.TokenizerVocab`."""
    return TokenizerVocab(tokenizer)


_DROPOUT_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout",
                   "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "summary_first_dropout",
                   "activation_dropout", "classifier_dropout")
_DROPOUT_ATTRIBUTES = ("attention_dropout", "dropout", "dropout_rate", "hidden_dropout")


def _set_config_dropout(config: Any, dropout: float) -> None:
    for name in _DROPOUT_FIELDS:
        if isinstance(getattr(config, name, None), float | int) and not isinstance(getattr(config, name), bool):
            setattr(config, name, dropout)


def set_dropout(model: nn.Module, dropout: float) -> None:
    """Every dropout rate of a built model set to ``dropout``: its config's rates, every ``nn.Dropout`` and the
    float rates attention modules keep for their fused kernels (what ``dropout=`` does to a given model)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    config = getattr(model, "config", None)
    if config is not None:
        _set_config_dropout(config, dropout)
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = dropout
        for name in _DROPOUT_ATTRIBUTES:
            if isinstance(module.__dict__.get(name), float):
                setattr(module, name, float(dropout))


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
        _set_config_dropout(config, dropout)
    return transformers.AutoModelForCausalLM.from_config(config)


def _id_map(vocab: Vocab, model_vocab: int, token_ids: Sequence[int] | None) -> Tensor:
    """The model's id for each seqrl id: ``token_ids``, a tokenizer vocabulary's own map, or the identity (a
    model sized to the vocabulary)."""
    vocab_size = len(vocab)
    if isinstance(vocab, TokenizerVocab):
        if token_ids is not None:
            raise ValueError("the vocabulary is a tokenizer's: it maps its ids itself, pass no token_ids=")
        ids = vocab.model_ids.clone()
        if int(ids.max()) >= model_vocab:
            raise ValueError(f"the tokenizer has id {int(ids.max())} but the model only {model_vocab} token ids: "
                             "the tokenizer is not this model's")
        return ids
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


def _runs(ids: Tensor) -> list[tuple[int, int]]:
    """``ids`` as runs of consecutive model ids [start, stop): the logits over the seqrl vocabulary are then slices
    of the model's (one run: a view; a few: one copy), not a gather."""
    values = ids.tolist()
    runs: list[tuple[int, int]] = []
    for i in values:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


_MAX_RUNS = 16
"""Above this many runs, the seqrl vocabulary's logits are gathered (index_select) instead of sliced."""


def _local_directory(path: str | Path) -> Path:
    """``path`` as an existing local directory, else a one-line ValueError (seqrl never downloads)."""
    directory = Path(path).expanduser()
    if directory.is_dir():
        return directory
    if directory.exists():
        raise ValueError(f"{str(path)!r} is a file: from_pretrained takes the directory a model was saved in")
    raise ValueError(f"{str(path)!r} is not a local directory: seqrl never downloads a model; download it "
                     "yourself (e.g. `hf download NAME --local-dir DIR`) and pass DIR")


def _forward_parameters(model: Any) -> set[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return set(inspect.signature(base.forward).parameters)
    except (TypeError, ValueError):
        return set()


@dataclass
class _Prompt:
    """Prompts left-padded for the model: tokens [B, P], attention mask [B, P] (None without padding), position
    ids [B, P] (None without padding) and the number of real tokens of each row [B]."""

    tokens: Tensor
    mask: Tensor | None
    positions: Tensor | None
    lengths: Tensor


@dataclass
class _DecodeState:
    """The sampler's state: the model's cache, the attention mask of every position so far and to come (None
    without padding), the position of the next token per row, the cache's width, and the prompt's last logits
    (what the first step returns)."""

    cache: Any
    mask: Tensor | None
    next_position: Tensor
    width: int
    first: Tensor | None


class HFCausalLMPolicy(AutoregressivePolicy):
    """A ``transformers`` ``AutoModelForCausalLM`` behind the policy interface.

    **Prompts.** An optional context (a :class:`SequenceBatch` in this policy's vocabulary, its ``lengths`` the
    prompt lengths; ``vocab.encode_prompts(texts)`` makes one) conditions sampling, greedy and beam decoding
    (``sample(n, context)``: ``n`` per prompt) and the teacher-forced log-probabilities (``batch.context``): the
    model reads the prompt's tokens, then the completion, whose first token follows the prompt's last token
    directly. Prompts of different lengths are left-padded with an attention mask and position ids, so a batch
    gives what each prompt gives alone. Without a context the model starts from BOS (the unconditional policy).
    ``max_len`` counts the completion's tokens only (EOS included); the model needs ``P + max_len - 1``
    positions for a prompt of ``P`` tokens.

    Sampling runs the prompt once, then one token a step with the model's key/value cache (the current cache
    API: the model makes its cache, which is passed back as ``cache=``, or ``past_key_values=`` on versions
    before the rename); teacher forcing runs prompt and completion in one forward pass; beam search reorders
    the cache.

    **Vocabulary.** Token ``i`` of the seqrl vocabulary is the model's token ``token_ids[i]``: a tokenizer's
    vocabulary (:func:`tokenizer_vocab`) brings its own map; otherwise ``token_ids=`` (default: the same id, so
    the model's vocabulary must be the seqrl vocabulary's size).

    Args:
        vocab: target vocabulary (a :class:`~seqrl.types.TokenizerVocab` for a pretrained model).
        max_len: longest completion, EOS included.
        model: a built causal LM; else one is built, randomly initialised, from ``config``.
        config: a ``transformers`` config, or its ``to_dict()`` (what checkpoints store); default:
            ``model_type`` with the sizes below.
        model_type: architecture for the default config (``AutoConfig.for_model``), e.g. ``"gpt2"``.
        hidden_size, num_layers, num_heads: sizes of the default config.
        dropout: overrides every dropout rate of the model, built or given (None: the model's own).
        token_ids: the model's id for each seqrl id (not with a tokenizer's vocabulary).
        lora: LoRA adapters (needs ``pip install seqrl[peft]``): a dict of ``peft.LoraConfig`` settings (e.g.
            ``{"r": 8, "lora_alpha": 16}``), a ``LoraConfig``, or True for peft's defaults. Only the adapters
            train; :meth:`frozen_copy` shares the frozen base weights (a second adapter, not a second model).
    """

    registry_name = "hf"
    accepts_prompts = True
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
        lora: LoraSpec = None,
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
        if dropout is not None:
            set_dropout(model, dropout)
        if lora is not None and lora is not False:
            model = apply_lora(model, lora)
        self.model = model
        ids = _id_map(vocab, int(model.config.vocab_size), token_ids)
        self.register_buffer("_token_ids", ids, persistent=False)
        self.positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(self.positions, int) and self.positions < max_len:
            raise ValueError(f"the model has {self.positions} positions; max_len={max_len} needs at least {max_len}")
        self.identity_ids = len(vocab) == int(model.config.vocab_size) and bool(
            torch.equal(ids, torch.arange(len(vocab))))
        runs = _runs(ids)
        self._runs = runs if len(runs) <= _MAX_RUNS else None
        accepted = _forward_parameters(model)
        self._cache_keyword = "cache" if "cache" in accepted else "past_key_values"
        self._keeps_logits = "logits_to_keep" in accepted
        self.adapter = "default" if is_lora(model) else None
        if self.adapter is not None:
            self._register_state_dict_hook(drop_frozen_adapters)
            self.register_load_state_dict_post_hook(ignore_frozen_adapters)
        self.config = {"config": model.config.to_dict(),
                       "token_ids": None if token_ids is None else [int(i) for i in ids],
                       "lora": lora_settings(model) if self.adapter is not None else None}

    # --- loading and saving ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, *, max_len: int, dropout: float | None = None, lora: LoraSpec = None,
                        **overrides: Any) -> HFCausalLMPolicy:
        """The model and tokenizer saved in the local directory ``path`` (``save_pretrained``'s layout), as a
        policy whose vocabulary is the tokenizer's (:func:`tokenizer_vocab`). Nothing is downloaded: a name that
        is not a directory (a hub name) is refused with one line.

        ``max_len``: longest completion, EOS included. ``dropout``: every dropout rate of the loaded model.
        ``lora``: adapters (see the class). ``overrides``: ``temperature``/``top_k``/``top_p`` set the sampling
        options; any other key sets that attribute of the model's config before the weights load (it must exist).
        """
        directory = _local_directory(path)
        transformers = _transformers()
        sampling = {key: overrides.pop(key) for key in SAMPLING_KEYS if key in overrides}
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise ValueError(f"{key}={value!r}: the model's config ({type(config).__name__}) has no setting "
                                 f"{key!r}")
            setattr(config, key, value)
        if dropout is not None:
            _set_config_dropout(config, dropout)
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, config=config, local_files_only=True)
        policy = cls(tokenizer_vocab(tokenizer), max_len, model=model, dropout=dropout, lora=lora)
        policy.set_sampling(**sampling)
        return policy

    def save_pretrained(self, directory: str | Path, *, merged: bool = True) -> Path:
        """Write the model (and the tokenizer, when the vocabulary is a tokenizer's) to ``directory`` as
        transformers writes them, nothing added: ``AutoModelForCausalLM.from_pretrained(directory)`` and
        ``AutoTokenizer.from_pretrained(directory)`` load them back.

        With LoRA, ``merged=True`` (the default) writes the base model with the adapters merged into its weights
        (a plain model: loads without peft; the live model is untouched, a merged copy is made for the moment of
        writing); ``merged=False`` writes the adapters alone, in peft's format (``PeftModel.from_pretrained(base,
        directory)``). Returns ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.adapter is None:
            self.model.save_pretrained(directory)
        elif merged:
            save_merged(self.model, self.adapter, directory)
        else:
            self.model.save_pretrained(directory, selected_adapters=[self.adapter])
        tokenizer = getattr(self.vocab, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return directory

    # --- frozen copies: a LoRA policy shares its base weights ----------------------------------------------
    def frozen_copy(self) -> AutoregressivePolicy:
        """A copy that does not train. With LoRA: a view on the *same* model with its own frozen adapter (a copy
        of this policy's adapter weights), so the base weights are shared, not copied; otherwise a deep copy."""
        if self.adapter is None:
            return super().frozen_copy()
        return _FrozenLoraView(self, add_frozen_adapter(self.model, self.adapter))

    def load_weights_from(self, other: AutoregressivePolicy) -> None:
        """Take ``other``'s weights (q ← π_θ); between LoRA policies only the adapter weights are copied."""
        other_adapter = getattr(other, "adapter", None)
        if self.adapter is not None and other_adapter is not None:
            copy_adapter(getattr(other, "model"), other_adapter, self.model, self.adapter)  # noqa: B009
            return
        super().load_weights_from(other)

    # --- the model ---------------------------------------------------------------------------------------
    def _forward(self, inputs: Tensor, *, mask: Tensor | None = None, positions: Tensor | None = None,
                 cache: Any = None, use_cache: bool = False, keep: int = 0) -> tuple[Tensor, Any]:
        """The model's logits over the seqrl vocabulary for ``inputs`` (seqrl ids) — the last ``keep`` positions
        only when ``keep`` > 0 — and its cache."""
        kwargs: dict[str, Any] = {"input_ids": inputs if self.identity_ids else self._token_ids[inputs],
                                  "use_cache": use_cache}
        if mask is not None:
            kwargs["attention_mask"] = mask
            kwargs["position_ids"] = positions
        if cache is not None:
            kwargs[self._cache_keyword] = cache
        if keep and self._keeps_logits:
            kwargs["logits_to_keep"] = keep
        out = self.model(**kwargs)
        logits = out.logits[:, -keep:] if keep else out.logits
        if not self.identity_ids:
            logits = self._vocabulary_logits(logits)
        # float32 logits whatever the model's dtype: the log-probabilities the algorithms compare (π/q, log π − log a)
        # are those the sampler draws with, which works in float32
        return logits.float(), out.get(self._cache_keyword) if use_cache else None

    def draw(self, log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A token per row by inverting the CDF (exactly π's distribution; one uniform number per row, where
        ``torch.multinomial`` would draw one per vocabulary entry: the cost that dominates a sampling step of a
        language model's vocabulary)."""
        return inverse_cdf_draw(log_probs, generator)

    def _vocabulary_logits(self, logits: Tensor) -> Tensor:
        """The model's logits [..., model vocab] restricted to the seqrl vocabulary [..., V], in seqrl id order."""
        if self._runs is None:
            return logits.index_select(-1, self._token_ids)
        if len(self._runs) == 1:
            start, stop = self._runs[0]
            return logits[..., start:stop]
        return torch.cat([logits[..., start:stop] for start, stop in self._runs], -1)

    def _prompt(self, context: SequenceBatch | None, batch_size: int) -> _Prompt:
        """The prompts left-padded (an empty prompt, or none at all, is BOS alone)."""
        dev, bos = self.device, self.vocab.bos
        if context is None:
            return _Prompt(torch.full((batch_size, 1), bos, dtype=torch.long, device=dev), None, None,
                           torch.ones(batch_size, dtype=torch.long, device=dev))
        tokens, lengths = context.tokens.to(dev), context.lengths.to(dev)
        empty = lengths == 0
        if tokens.shape[1] == 0:
            tokens = torch.full((tokens.shape[0], 1), self.vocab.pad, dtype=torch.long, device=dev)
        tokens = torch.where(empty[:, None] & (torch.arange(tokens.shape[1], device=dev) == 0), bos, tokens)
        lengths = lengths.clamp(min=1)
        width = int(lengths.max())
        if self.positions is not None and width + self.max_len - 1 > self.positions:
            raise BatchError(f"a prompt of {width} tokens and max_len={self.max_len} need {width + self.max_len - 1} "
                             f"positions; the model has {self.positions}")
        source = torch.arange(width, device=dev)[None, :] - (width - lengths)[:, None]
        real = source >= 0
        left = torch.where(real, tokens[:, :width].gather(1, source.clamp(min=0)), self.vocab.pad)
        if bool(real.all()):
            return _Prompt(left, None, None, lengths)
        mask = real.long()
        return _Prompt(left, mask, (mask.cumsum(1) - 1).clamp(min=0), lengths)

    def teacher_forced_logits(self, batch: SequenceBatch) -> Tensor:
        # One forward pass over prompt (or BOS), y_1 … y_{T-1}; the causal mask keeps the padding after EOS unseen.
        width = batch.tokens.shape[1]
        prompt = self._prompt(batch.context, batch.batch_size)
        inputs = torch.cat([prompt.tokens, batch.tokens[:, : width - 1]], 1)
        mask = positions = None
        if prompt.mask is not None and prompt.positions is not None:
            after = torch.arange(width - 1, device=self.device)[None, :]
            mask = torch.cat([prompt.mask, torch.ones_like(after).expand(batch.batch_size, -1)], 1)
            positions = torch.cat([prompt.positions, prompt.lengths[:, None] + after], 1)
        logits, _ = self._forward(inputs, mask=mask, positions=positions, keep=width)
        return logits

    def init_state(self, context: SequenceBatch | None, batch_size: int) -> State:
        """Runs the prompt (BOS without one) into the cache; the first step returns its last logits."""
        prompt = self._prompt(context, batch_size)
        logits, cache = self._forward(prompt.tokens, mask=prompt.mask, positions=prompt.positions, use_cache=True,
                                      keep=1)
        mask = None
        if prompt.mask is not None:
            mask = torch.cat([prompt.mask, prompt.mask.new_ones(batch_size, self.max_len)], 1)
        return _DecodeState(cache, mask, prompt.lengths, prompt.tokens.shape[1], logits[:, -1])

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State]:
        if state.first is not None:  # the prompt's last position predicts the first token (prev is BOS then)
            return state.first, replace(state, first=None)
        width = state.width + 1
        mask = state.mask[:, :width] if state.mask is not None else None
        logits, cache = self._forward(prev_tokens[:, None], mask=mask, positions=state.next_position[:, None],
                                      cache=state.cache, use_cache=True)
        return logits[:, -1], _DecodeState(cache, state.mask, state.next_position + 1, width, None)

    def reorder_state(self, state: State, index: Tensor) -> State:
        cache = state.cache
        if hasattr(cache, "reorder_cache"):  # a transformers Cache: reordered in place
            cache.reorder_cache(index)
        elif cache is not None:  # a legacy tuple cache (transformers before the Cache classes)
            cache = tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)
        return _DecodeState(cache, state.mask.index_select(0, index) if state.mask is not None else None,
                            state.next_position.index_select(0, index), state.width,
                            state.first.index_select(0, index) if state.first is not None else None)


class _FrozenLoraView(HFCausalLMPolicy):
    """A frozen copy of a LoRA policy that shares its model: the base weights and the policy's adapter stay where
    they are; the copy owns one frozen adapter of the same model, selected (and the model put in the copy's
    train/eval mode) for its own forward passes only. The shared model is not a submodule of the copy: moving,
    ``eval()`` or the state dict of the copy concern its adapter alone (its state dict holds the adapter's
    weights, under ``adapter.``)."""

    def __init__(self, source: HFCausalLMPolicy, adapter: str) -> None:
        AutoregressivePolicy.__init__(self, source.vocab, source.max_len)
        object.__setattr__(self, "model", source.model)  # shared, not registered: not moved, saved or trained here
        self.register_buffer("_token_ids", source._token_ids, persistent=False)  # shared: never written
        self.positions, self.identity_ids, self._runs = source.positions, source.identity_ids, source._runs
        self._cache_keyword, self._keeps_logits = source._cache_keyword, source._keeps_logits
        self.config, self.sampling, self.adapter = dict(source.config), source.sampling, adapter
        self._layers = tuner_layers(source.model)
        self.to(source.device)
        self.train(source.training)

    def _forward(self, inputs: Tensor, **kwargs: Any) -> tuple[Tensor, Any]:
        with selected_adapter(self._layers, self.adapter or "default"), model_mode(self.model, self.training):
            return super()._forward(inputs, **kwargs)

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for key, tensor in adapter_state(self.model, self.adapter or "default").items():
            destination[f"{prefix}adapter.{key}"] = tensor if keep_vars else tensor.detach()

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        head = f"{prefix}adapter."
        given = {k[len(head):]: v for k, v in state_dict.items() if k.startswith(head)}
        target = adapter_state(self.model, self.adapter or "default")
        with torch.no_grad():
            for key, tensor in target.items():
                if key not in given:
                    missing_keys.append(head + key)
                elif given[key].shape != tensor.shape:
                    error_msgs.append(f"{head}{key}: shape {tuple(given[key].shape)}, expected {tuple(tensor.shape)}")
                else:
                    tensor.copy_(given[key])
        unexpected_keys.extend(head + k for k in given if k not in target)
        rest = {k: v for k, v in state_dict.items() if not k.startswith(head)}
        super()._load_from_state_dict(rest, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
