"""The policy interface and the one sampler / decoder every policy shares.

A policy π_θ(y | x) = Π_t π_θ(y_t | y_<t, x) is an autoregressive model over a
:class:`~seqrl.types.Vocab`. Concrete policies only say how to start (``init_state``),
take one step (``step``) and reorder their state (``reorder_state``); teacher forcing,
batched sampling, greedy and beam decoding are written once, here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..types import BatchError, SequenceBatch, Vocab
from ..utils import masked_sum

State = Any


@dataclass(frozen=True)
class StepInfo:
    """What an override hook sees at step ``t`` of sampling (all tensors on the policy's device).

    Attributes:
        t: 0-based position being generated.
        prefix: [B, t] tokens generated so far.
        log_probs: [B, V] the policy's sampling log-distribution at this step.
        proposed: [B] the token the policy sampled.
        finished: [B] rows that already emitted EOS (their token is replaced by PAD anyway).
        context: the (repeated) context batch, or None.
    """

    t: int
    prefix: Tensor
    log_probs: Tensor
    proposed: Tensor
    finished: Tensor
    context: SequenceBatch | None


OverrideHook = Callable[[StepInfo], Tensor]


SAMPLING_KEYS = ("temperature", "top_k", "top_p")
MIN_TEMPERATURE = 1e-4


@dataclass(frozen=True)
class SamplingOptions:
    """How a policy turns its logits into the distribution π it samples from *and* scores with.

    Applied in this order, after the masking every policy does (PAD/BOS never, EOS at ``max_len - 1``):
    logits / ``temperature``; then only the ``top_k`` largest logits kept (0: all; ties at the k-th value are
    kept); then only the smallest set of most probable tokens whose probability reaches ``top_p`` (1.0: all; the
    most probable token is always kept); the rest get −inf and the kept ones are renormalized. The defaults are
    off: exactly the plain softmax.

    :meth:`AutoregressivePolicy.sample`, :meth:`~AutoregressivePolicy.log_dists` (so ``sequence_log_prob``),
    greedy and beam search all use this one distribution, so the log-probabilities an algorithm reads are those
    of what was sampled (DPG's π/q ratio, the PG log-likelihoods, KL-control's log π − log a).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        t, k, p = self.temperature, self.top_k, self.top_p
        if isinstance(t, bool) or not isinstance(t, int | float) or not (MIN_TEMPERATURE <= t <= 1 / MIN_TEMPERATURE):
            raise ValueError(f"temperature must be in [{MIN_TEMPERATURE:g}, {1 / MIN_TEMPERATURE:g}] (below, logits/t "
                             f"overflow float32: decode greedily instead), got {t!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"top_k must be an int ≥ 0 (0: off), got {k!r}")
        if isinstance(p, bool) or not isinstance(p, int | float) or not (0 < p <= 1):
            raise ValueError(f"top_p must lie in (0, 1] (1: off), got {p!r}")
        object.__setattr__(self, "temperature", float(t))
        object.__setattr__(self, "top_p", float(p))

    @property
    def is_default(self) -> bool:
        return self == SamplingOptions()

    def changed(self) -> dict[str, float | int]:
        """The settings that differ from the defaults (what a checkpoint records)."""
        default = SamplingOptions()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


def inverse_cdf_draw(log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One token per row of ``log_probs`` [B, V] by inverting the CDF (in float64): one uniform number per row
    instead of ``torch.multinomial``'s V exponential ones (a large vocabulary's sampling cost). Exactly the
    distribution given: a token of probability 0 is never drawn."""
    cdf = log_probs.double().exp().cumsum(-1)  # (B, V)
    total = cdf[:, -1:]
    u = torch.rand(total.shape, dtype=cdf.dtype, device=cdf.device, generator=generator) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # u < total: some cdf[i] > u
    return torch.searchsorted(cdf, u, right=True).squeeze(1)  # the first i with cdf[i] > u: p_i > 0


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """``logits`` [..., V] with −inf below the k-th largest value of each row."""
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """``logits`` [..., V] with −inf outside the smallest most-probable set whose probability reaches ``p``."""
    probs, order = torch.softmax(logits, -1).sort(-1, descending=True)
    before = probs.cumsum(-1) - probs  # mass of the strictly more probable tokens
    drop_sorted = before >= p
    drop_sorted[..., 0] = False  # the most probable token always stays (a p below float32's range rounds to 0)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


@dataclass(frozen=True)
class Samples:
    """A batch of sampled sequences with their per-token log-probabilities.

    ``logp_t[b, t]`` is log of the probability with which token ``t`` was chosen by the
    sampling distribution (the policy's :class:`SamplingOptions` and any call-level temperature
    applied; the policy's probability of the emitted token when an override replaced it); 0 on
    padding. With no call-level temperature and no override it equals the policy's own
    log π(y_t | y_<t, x), as :meth:`AutoregressivePolicy.log_dists` gives it.
    """

    batch: SequenceBatch
    logp_t: Tensor

    @property
    def logp(self) -> Tensor:
        """[B] sequence log-probability Σ_t logp_t."""
        return self.logp_t.sum(1)

    @property
    def tokens(self) -> Tensor:
        return self.batch.tokens

    @property
    def lengths(self) -> Tensor:
        return self.batch.lengths


@runtime_checkable
class Policy(Protocol):
    """What every algorithm may ask of a policy."""

    vocab: Vocab
    max_len: int
    is_conditional: bool

    def log_dists(self, batch: SequenceBatch) -> Tensor:
        """[B, T, V] teacher-forced log π(· | y_<t, x) for every position of ``batch``."""

    def sequence_log_prob(self, batch: SequenceBatch) -> Tensor:
        """[B] log π(y | x) = Σ_t log π(y_t | y_<t, x)."""

    def sample(
        self,
        num_samples: int = 1,
        context: SequenceBatch | None = None,
        *,
        temperature: float = 1.0,
        override: OverrideHook | None = None,
        generator: torch.Generator | None = None,
    ) -> Samples: ...

    def greedy(self, num_samples: int = 1, context: SequenceBatch | None = None) -> Samples: ...

    def beam_search(
        self, context: SequenceBatch | None = None, beam_size: int = 5, length_penalty: float = 0.0
    ) -> tuple[SequenceBatch, Tensor]: ...


class AutoregressivePolicy(nn.Module):
    """Base class: subclasses implement ``init_state``, ``step`` and ``reorder_state``.

    Args:
        vocab: target vocabulary.
        max_len: longest sequence, EOS included; EOS is forced at position ``max_len - 1``.

    Sampling options (temperature, top-k, top-p: :class:`SamplingOptions`) are the attribute ``sampling``, set
    with :meth:`set_sampling` after construction (``make_policy`` and checkpoints pass them as settings
    ``temperature=``, ``top_k=``, ``top_p=``); they define π itself, for sampling and scoring alike.

    ``accepts_prompts``: an unconditional policy that may still be given a context (prompt tokens in its own
    vocabulary, ``SequenceBatch.context``) to condition on, as the ``hf`` policy does; without one it is the
    unconditional model.
    """

    is_conditional: bool = False
    accepts_prompts: bool = False
    registry_name: str = ""
    sampling: SamplingOptions = SamplingOptions()
    _allowed: Tensor  # buffers (register_buffer below), declared so that they type as tensors
    _eos_only: Tensor

    def __init__(self, vocab: Vocab, max_len: int) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be ≥ 1 (EOS included), got {max_len}")
        self.vocab = vocab
        self.max_len = max_len
        allowed = vocab.generatable_mask()
        self.register_buffer("_allowed", allowed, persistent=False)
        eos_only = torch.zeros(len(vocab), dtype=torch.bool)
        eos_only[vocab.eos] = True
        self.register_buffer("_eos_only", eos_only, persistent=False)
        self.config: dict[str, Any] = {}

    # --- what subclasses provide -------------------------------------------------------
    def init_state(self, context: SequenceBatch | None, batch_size: int) -> State:
        raise NotImplementedError

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State]:
        """One step: ``prev_tokens`` [B] → logits [B, V] for the next token, new state."""
        raise NotImplementedError

    def reorder_state(self, state: State, index: Tensor) -> State:
        raise NotImplementedError

    def teacher_forced_logits(self, batch: SequenceBatch) -> Tensor:
        """[B, T, V] raw logits under teacher forcing; step by step unless overridden."""
        inputs = self._shifted_inputs(batch.tokens)
        state = self.init_state(batch.context, batch.batch_size)
        out = []
        for t in range(inputs.shape[1]):
            logits, state = self.step(state, inputs[:, t])
            out.append(logits)
        return torch.stack(out, 1)

    # --- shared machinery --------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._allowed.device

    def _shifted_inputs(self, tokens: Tensor) -> Tensor:
        """[B, T] inputs BOS, y_1, …, y_{T-1} for predicting y_1 … y_T."""
        bos = torch.full_like(tokens[:, :1], self.vocab.bos)
        return torch.cat([bos, tokens[:, :-1]], 1)

    def _check_context(self, context: SequenceBatch | None) -> None:
        if self.accepts_prompts and not self.is_conditional:
            if context is not None and context.tokens.numel() and (
                    int(context.tokens.min()) < 0 or int(context.tokens.max()) >= len(self.vocab)):
                raise BatchError(f"prompt token ids outside [0, {len(self.vocab)}): a prompt is in the policy's own "
                                 "vocabulary (vocab.encode_prompts)")
            return
        if self.is_conditional and context is None:
            raise BatchError(f"{type(self).__name__} is conditional: pass a context (source) batch")
        if not self.is_conditional and context is not None:
            raise BatchError(f"{type(self).__name__} is unconditional: it takes no context")

    def mask_logits(self, logits: Tensor, positions: Tensor | int) -> Tensor:
        """Forbid PAD/BOS everywhere and all but EOS at position ``max_len - 1``.

        ``logits`` is [..., V]; ``positions`` broadcasts against its leading dims.
        """
        if isinstance(positions, int):  # one step of the sampler: one mask for the whole batch
            allowed = self._eos_only if positions >= self.max_len - 1 else self._allowed
            return logits.masked_fill(~allowed, float("-inf"))
        positions = torch.as_tensor(positions, device=logits.device)
        last = (positions >= self.max_len - 1)[..., None]
        allowed = torch.where(last, self._eos_only, self._allowed)
        return logits.masked_fill(~allowed, float("-inf"))

    def draw(self, log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One token per row from the log-distributions ``log_probs`` [B, V] (``torch.multinomial``; a policy may
        draw from the same distribution another way: the ``hf`` policy inverts the CDF)."""
        return torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)

    def set_sampling(self, **settings: Any) -> AutoregressivePolicy:
        """Change the sampling options (``temperature=``, ``top_k=``, ``top_p=``; the others kept); returns the
        policy. They define π for sampling and scoring alike (see :class:`SamplingOptions`)."""
        unknown = sorted(set(settings) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"unknown sampling option(s) {unknown}; expected {list(SAMPLING_KEYS)}")
        self.sampling = replace(self.sampling, **settings)
        return self

    def next_log_probs(self, logits: Tensor, positions: Tensor | int, temperature: float = 1.0) -> Tensor:
        """log π(· | prefix) from raw next-token ``logits`` [..., V] at ``positions``: masked (:meth:`mask_logits`),
        then the sampling options (and an extra call-level ``temperature``) applied, then log-softmax."""
        options = self.sampling
        logits = self.mask_logits(logits, positions)
        scale = options.temperature * temperature
        if scale != 1.0:
            logits = logits / scale
        if options.top_k:
            logits = top_k_filter(logits, options.top_k)
        if options.top_p < 1.0:
            logits = top_p_filter(logits, options.top_p)
        return F.log_softmax(logits, -1)

    def log_dists(self, batch: SequenceBatch) -> Tensor:
        """[B, T, V] teacher-forced log π(· | y_<t, x) (masked ids hold -inf)."""
        self._check_context(batch.context)
        if batch.tokens.shape[1] > self.max_len:
            raise BatchError(f"batch width {batch.tokens.shape[1]} exceeds max_len={self.max_len}")
        logits_t = self.teacher_forced_logits(batch)  # (B, T, V)
        steps = torch.arange(logits_t.shape[1], device=logits_t.device)
        return self.next_log_probs(logits_t, steps[None, :])

    def token_log_probs(self, batch: SequenceBatch) -> Tensor:
        """[B, T] log π(y_t | y_<t, x) of the batch's own tokens, 0 on padding."""
        logp_t = self.log_dists(batch).gather(2, batch.tokens.unsqueeze(2)).squeeze(2)
        return torch.where(batch.mask_t, logp_t, torch.zeros_like(logp_t))

    def sequence_log_prob(self, batch: SequenceBatch) -> Tensor:
        """[B] log π(y | x) = Σ_t log π(y_t | y_<t, x)."""
        logp_t = self.log_dists(batch).gather(2, batch.tokens.unsqueeze(2)).squeeze(2)
        return masked_sum(logp_t, batch.mask_t)

    def _repeat_context(self, context: SequenceBatch | None, num_samples: int) -> tuple[SequenceBatch | None, int]:
        self._check_context(context)
        if num_samples < 1:
            raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
        if context is None:
            return None, num_samples
        context = context.to(self.device)
        rep = context.repeat_interleave(num_samples)
        return rep, rep.batch_size

    def sample(
        self,
        num_samples: int = 1,
        context: SequenceBatch | None = None,
        *,
        temperature: float = 1.0,
        override: OverrideHook | None = None,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> Samples:
        """Sample whole sequences, batched on the policy's device.

        Unconditional: ``num_samples`` sequences. Conditional (or a prompted policy given a
        ``context``): ``num_samples`` per row of ``context`` (rows repeated in place). The
        distribution is the policy's (its :class:`SamplingOptions`), further divided by a
        call-level ``temperature``. The loop runs ``max_len`` steps with no host
        synchronisation; rows that finished emit PAD with log-probability 0. ``override``
        may replace the sampled token of any row at any step (MIXER, scheduled sampling,
        interpolation); EOS is forced at the last position regardless.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        ctx, batch_size = self._repeat_context(context, num_samples)
        dev, vocab, max_len = self.device, self.vocab, self.max_len
        tokens = torch.full((batch_size, max_len), vocab.pad, dtype=torch.long, device=dev)
        logp_t = torch.zeros(batch_size, max_len, device=dev)
        lengths = torch.full((batch_size,), max_len, dtype=torch.long, device=dev)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=dev)
        prev = torch.full((batch_size,), vocab.bos, dtype=torch.long, device=dev)
        state = self.init_state(ctx, batch_size)
        for t in range(max_len):
            logits, state = self.step(state, prev)
            log_probs = self.next_log_probs(logits.float(), t, temperature)  # (B, V)
            if greedy:
                tok = log_probs.argmax(-1)
            else:
                tok = self.draw(log_probs, generator)
            if override is not None:
                tok = override(StepInfo(t, tokens[:, :t], log_probs, tok, finished, ctx))
                if t == max_len - 1:
                    tok = torch.full_like(tok, vocab.eos)
            tok = torch.where(finished, torch.full_like(tok, vocab.pad), tok)
            chosen = log_probs.gather(1, tok.unsqueeze(1)).squeeze(1)
            logp_t[:, t] = torch.where(finished, torch.zeros_like(chosen), chosen)
            tokens[:, t] = tok
            newly = (~finished) & (tok == vocab.eos)
            lengths = torch.where(newly, torch.full_like(lengths, t + 1), lengths)
            finished = finished | newly
            prev = torch.where(finished, torch.full_like(tok, vocab.eos), tok)
        return Samples(SequenceBatch(tokens, lengths, ctx), logp_t)

    @torch.no_grad()
    def greedy(self, num_samples: int = 1, context: SequenceBatch | None = None) -> Samples:
        """Arg-max decoding (identical rows for an unconditional policy)."""
        return self.sample(num_samples, context, greedy=True)

    @torch.no_grad()
    def beam_search(
        self,
        context: SequenceBatch | None = None,
        beam_size: int = 5,
        length_penalty: float = 0.0,
    ) -> tuple[SequenceBatch, Tensor]:
        """Beam search, batched over contexts: best sequence per context and its log π.

        Finished hypotheses stay in the beam with their score frozen, so with a beam as
        wide as the widest level of the prefix tree the result is the exact mode. The final
        pick maximises ``log π / length**length_penalty`` (0: plain log-probability).
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be ≥ 1, got {beam_size}")
        ctx, batch_size = self._repeat_context(context, 1)
        dev, vocab, V, K = self.device, self.vocab, len(self.vocab), beam_size
        beam_ctx, _ = self._repeat_context(ctx, K) if ctx is not None else (None, 0)
        state = self.init_state(beam_ctx, batch_size * K)
        scores = torch.full((batch_size, K), float("-inf"), device=dev)
        scores[:, 0] = 0.0
        tokens = torch.zeros(batch_size, K, 0, dtype=torch.long, device=dev)
        finished = torch.zeros(batch_size, K, dtype=torch.bool, device=dev)
        prev = torch.full((batch_size * K,), vocab.bos, dtype=torch.long, device=dev)
        pad_only = torch.full((V,), float("-inf"), device=dev)
        pad_only[vocab.pad] = 0.0
        base = (torch.arange(batch_size, device=dev) * K)[:, None]
        for t in range(self.max_len):
            logits, state = self.step(state, prev)
            log_probs = self.next_log_probs(logits.float(), t).view(batch_size, K, V)
            log_probs = torch.where(finished[..., None], pad_only, log_probs)
            cand = (scores[..., None] + log_probs).view(batch_size, K * V)  # (B, K·V)
            scores, flat = cand.topk(K, dim=1)
            beam, tok = flat // V, flat % V  # (B, K) each
            state = self.reorder_state(state, (base + beam).flatten())
            tokens = torch.cat([tokens.gather(1, beam[..., None].expand(-1, -1, tokens.shape[2])), tok[..., None]], 2)
            finished = finished.gather(1, beam) | (tok == vocab.eos)
            prev = torch.where(tok == vocab.pad, torch.full_like(tok, vocab.eos), tok).flatten()
        lengths = (tokens != vocab.pad).sum(2)  # (B, K)
        final = scores / lengths.clamp(min=1).float() ** length_penalty if length_penalty else scores
        best = final.argmax(1)
        rows = torch.arange(batch_size, device=dev)
        best_tokens = tokens[rows, best]
        return SequenceBatch(best_tokens, lengths[rows, best], ctx), scores[rows, best]

    # --- frozen copies: DPG's proposal q, KL-control's base a --------------------------
    def frozen_copy(self) -> AutoregressivePolicy:
        """A copy that does not train (no gradients), for what an algorithm keeps fixed or swaps in (DPG's
        proposal, KL-control's base model). A policy whose weights are mostly shared and frozen (LoRA adapters
        over a base model) may return a view that shares them instead of a second copy."""
        frozen = copy.deepcopy(self, {id(self.vocab): self.vocab})  # the vocabulary (a tokenizer's, say) is shared
        for p in frozen.parameters():
            p.requires_grad_(False)
        return frozen

    def load_weights_from(self, other: AutoregressivePolicy) -> None:
        """Take ``other``'s weights (q ← π_θ): for a copy made by :meth:`frozen_copy` of the same policy."""
        self.load_state_dict(other.state_dict())

    # --- config, for checkpoints -------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Constructor arguments besides vocab (and source vocab), and the sampling options that differ from the
        defaults, for checkpoints (``make_policy`` takes both)."""
        return {**self.config, **self.sampling.changed()}
