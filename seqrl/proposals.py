"""Proposals and sampling overrides shared by the algorithms (one home; algorithms never import each other).

* :func:`samples_per_reference`: the one rule for how many samples a batch gets, conditional or
  unconditional policy alike: ``num`` per reference, reference-major (B·num rows).
* Payoff proposals around a reference y* for RAML / ERPO ([VAML/ERAC] App. B.1), each with a sampler
  and its exact normalized log-density on the policy's space:
  :func:`stratified_proposal` / :func:`stratified_log_prob` (the default: covers every sequence of
  the policy's space; an exact sampler of exp(R_H/τ) for seqrl's ``hamming`` reward),
  :func:`hamming_proposal` / :func:`hamming_log_prob` (|y*|'s length only) and
  :func:`ngram_replace` / :func:`ngram_log_prob` (Ma et al., 2017; |y*|'s length, one window).
* :func:`unigram_distribution`, :func:`unigram_noise`: data noising ([ERPO] Eq. 9).
* Override hooks for :meth:`Policy.sample`: :func:`reference_override` (MIXER, scheduled sampling)
  and the token-level spike-and-slab :class:`MixtureRecorder` with :func:`mixture_log_prob`
  (SPG, interpolation; [ERPO] Sec. 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from .policies.base import OverrideHook, Samples, StepInfo
from .rewards.base import candidate_rewards
from .types import SequenceBatch, Vocab


# --- how many samples a batch gets -------------------------------------------------------------
def samples_per_reference(policy, batch: SequenceBatch, num: int, mode: Literal["sample", "greedy"] = "sample", *,
                          override: OverrideHook | None = None, temperature: float = 1.0,
                          generator: torch.Generator | None = None) -> Samples:
    """y_{b,i} ~ π(· | x_b), i < num, for every reference b: B·num rows, reference-major (b·num + i).

    Conditional policies draw ``num`` per context row; unconditional ones draw B·num, so that row
    b·num + i lines up with ``batch.repeat_interleave(num)`` (and with override hooks built on it).
    ``mode="greedy"`` decodes arg-max instead (identical rows within a group).
    """
    if num < 1:
        raise ValueError(f"num must be ≥ 1, got {num}")
    conditional = getattr(policy, "is_conditional", batch.context is not None) or (
        getattr(policy, "accepts_prompts", False) and batch.context is not None)  # a prompted language model
    context = batch.context if conditional else None
    count = num if conditional else batch.batch_size * num
    if mode == "greedy":
        if override is not None:
            raise ValueError("greedy decoding takes no override hook")
        return policy.greedy(count, context)
    if mode != "sample":
        raise ValueError(f"mode must be 'sample' or 'greedy', got {mode!r}")
    return policy.sample(count, context, temperature=temperature, override=override, generator=generator)


# --- payoff proposals ([VAML/ERAC] App. B.1) -----------------------------------------------------
def _symbol_index(vocab: Vocab, device) -> tuple[Tensor, Tensor]:
    symbols = torch.tensor(vocab.symbol_ids, device=device)
    index = torch.full((len(vocab),), -1, dtype=torch.long, device=device)
    index[symbols] = torch.arange(len(symbols), device=device)
    return symbols, index


def _stratified_length_logits(n: Tensor, max_symbols: int, num_symbols: int, tau: float) -> Tensor:
    """[B, K+1] log P(k) (unnormalized) for k = 0…K symbols, given |y*| = n symbols [B]."""
    k = torch.arange(max_symbols + 1, device=n.device, dtype=torch.float64)[None]
    nd = n.double()[:, None]
    log_keep_all = math.log1p((num_symbols - 1) * math.exp(-1.0 / tau))  # −log p_keep
    penalty = ((k - nd).abs() + (k != nd).double()) / tau
    return -penalty + torch.minimum(k, nd) * log_keep_all + (k - nd).clamp(min=0) * math.log(num_symbols)


def stratified_proposal(refs: SequenceBatch, vocab: Vocab, num: int, tau: float, max_len: int,
                        generator: torch.Generator | None = None) -> SequenceBatch:
    """``num`` draws per reference of s(y) = exp(−d_H(y, y*)/τ)/Z over *every* sequence of at most
    ``max_len`` tokens (Norouzi et al., 2016, stratified by length then by substitutions).

    d_H is seqrl's ``hamming`` distance (EOS counted, so d_H = mismatches + |k − n| + [k ≠ n] for
    k symbols against n): draw the length k ∝ e^{−(|k−n|+[k≠n])/τ}(1+(S−1)e^{−1/τ})^{min(k,n)} S^{(k−n)+},
    then keep y*_i with probability 1/(1+(S−1)e^{−1/τ}) (else one of the S−1 other symbols) for
    i < min(k, n), and uniform symbols beyond. For the hamming reward this *is* q ∝ exp(R/τ); for any
    other reward it is a proposal with full support whose exact density is :func:`stratified_log_prob`.
    """
    dev = refs.device
    S = len(vocab.symbol_ids)
    K = max_len - 1
    rep = refs.with_context(None).repeat_interleave(num)
    N = rep.batch_size
    n = (rep.lengths - 1).clamp(min=0)
    k = torch.multinomial(torch.softmax(_stratified_length_logits(n, K, S, tau), 1).float().cpu(), 1,
                          generator=generator).squeeze(1).to(dev)
    symbols, index = _symbol_index(vocab, dev)
    width = max_len
    ref_tok = torch.nn.functional.pad(rep.tokens, (0, max(0, width - rep.tokens.shape[1])))[:, :width]
    ref_sym = index[ref_tok].clamp(min=0)
    p_keep = 1.0 / (1.0 + (S - 1) * math.exp(-1.0 / tau))
    keep = torch.rand(N, width, generator=generator).to(dev) < p_keep
    shift = torch.randint(1, max(S, 2), (N, width), generator=generator).to(dev)
    uniform = torch.randint(S, (N, width), generator=generator).to(dev)
    pos = torch.arange(width, device=dev)[None]
    near = torch.where(keep, ref_sym, (ref_sym + shift) % S) if S > 1 else ref_sym
    sym = torch.where(pos < n[:, None], near, uniform)
    tokens = torch.where(pos < k[:, None], symbols[sym], torch.full_like(sym, vocab.pad))
    tokens = torch.where(pos == k[:, None], torch.full_like(tokens, vocab.eos), tokens)
    return SequenceBatch(tokens, k + 1)


def _mismatches(hyps: SequenceBatch, refs: SequenceBatch, upto: Tensor) -> Tensor:
    """[B] number of positions i < upto where hyps and refs differ."""
    W = max(hyps.tokens.shape[1], refs.tokens.shape[1])
    h = torch.nn.functional.pad(hyps.tokens, (0, W - hyps.tokens.shape[1]))
    r = torch.nn.functional.pad(refs.tokens.to(h.device), (0, W - refs.tokens.shape[1]))
    pos = torch.arange(W, device=h.device)[None]
    return ((h != r) & (pos < upto[:, None])).sum(1)


def stratified_log_prob(hyps: SequenceBatch, refs: SequenceBatch, vocab: Vocab, tau: float,
                        max_len: int) -> Tensor:
    """[B] log s(y | y*) of :func:`stratified_proposal` (normalized over the policy's space)."""
    S = len(vocab.symbol_ids)
    refs = refs.to(hyps.device)
    n = (refs.lengths - 1).clamp(min=0)
    k = hyps.lengths - 1
    logits = _stratified_length_logits(n, max_len - 1, S, tau)
    log_pk = torch.log_softmax(logits, 1).gather(1, k.clamp(max=max_len - 1)[:, None]).squeeze(1)
    log_pk = torch.where(k <= max_len - 1, log_pk, torch.full_like(log_pk, -math.inf))
    m = torch.minimum(k, n)
    log_keep = -math.log1p((S - 1) * math.exp(-1.0 / tau))
    mism = _mismatches(hyps, refs, m).double()
    return log_pk + m.double() * log_keep - mism / tau - (k - n).clamp(min=0).double() * math.log(S)


def hamming_proposal(refs: SequenceBatch, vocab: Vocab, num: int, tau: float,
                     generator: torch.Generator | None = None) -> tuple[SequenceBatch, Tensor]:
    """Exact samples of s(y) ∝ exp(−d_H(y, y*)/τ) over sequences of |y*|'s length (Norouzi
    et al., 2016): draw the distance e with P(e) ∝ C(L, e)(S−1)^e e^{−e/τ}, then substitute e
    random positions by different symbols. Returns the samples and log s̃(y) = −d/τ (unnormalized;
    :func:`hamming_log_prob` is the normalized density)."""
    B, T = refs.tokens.shape
    dev = refs.device
    S = len(vocab.symbol_ids)
    rep = refs.with_context(None).repeat_interleave(num)
    tokens, lengths = rep.tokens.clone(), rep.lengths
    L = (lengths - 1).clamp(min=0)  # substitutable positions (EOS stays)
    e_grid = torch.arange(T, device=dev, dtype=torch.float64)[None]  # (1, T)
    Ld = L.double()[:, None]
    log_binom = torch.lgamma(Ld + 1) - torch.lgamma(e_grid + 1) - torch.lgamma((Ld - e_grid).clamp(min=0) + 1)
    choices = e_grid * math.log(S - 1) if S > 1 else torch.where(e_grid == 0, 0.0, -math.inf)
    logits = log_binom + choices - e_grid / tau
    logits = torch.where(e_grid <= Ld, logits, torch.full_like(logits, -math.inf))
    e = torch.multinomial(torch.softmax(logits, 1).float().cpu(), 1, generator=generator).squeeze(1).to(dev)
    # Choose e distinct positions among the first L: rank random keys, keep the e smallest.
    keys = torch.rand(B * num, T, generator=generator).to(dev)
    pos = torch.arange(T, device=dev)[None]
    keys = torch.where(pos < L[:, None], keys, torch.full_like(keys, 2.0))
    rank = keys.argsort(1).argsort(1)
    chosen = rank < e[:, None]
    symbols, index = _symbol_index(vocab, dev)
    shift = torch.randint(1, max(S, 2), (B * num, T), generator=generator).to(dev)  # never the same symbol
    new = symbols[(index[tokens].clamp(min=0) + shift) % S]
    tokens = torch.where(chosen, new, tokens)
    return SequenceBatch(tokens, lengths), -e.double() / tau


def hamming_log_prob(hyps: SequenceBatch, refs: SequenceBatch, vocab: Vocab, tau: float) -> Tensor:
    """[B] log s(y | y*) of :func:`hamming_proposal`: −d_H/τ − n·log(1+(S−1)e^{−1/τ}) on |y*|'s length, −∞ off it."""
    S = len(vocab.symbol_ids)
    refs = refs.to(hyps.device)
    n = (refs.lengths - 1).clamp(min=0)
    same = hyps.lengths == refs.lengths
    d = _mismatches(hyps, refs, n).double()
    out = -d / tau - n.double() * math.log1p((S - 1) * math.exp(-1.0 / tau))
    return torch.where(same, out, torch.full_like(out, -math.inf))


def ngram_replace(refs: SequenceBatch, vocab: Vocab, num: int, max_n: int = 4,
                  generator: torch.Generator | None = None) -> SequenceBatch:
    """``num`` perturbations per reference: an n-gram (n uniform in 1…max_n, start uniform)
    replaced by uniformly random symbols (Ma et al., 2017). Lengths are unchanged; the exact
    density is :func:`ngram_log_prob`."""
    B, T = refs.tokens.shape
    dev = refs.device
    rep = refs.with_context(None).repeat_interleave(num)
    tokens, lengths = rep.tokens.clone(), rep.lengths
    content = (lengths - 1).clamp(min=0)  # symbols before EOS
    g = generator
    n = torch.randint(1, max_n + 1, (B * num,), generator=g).to(dev)
    n = torch.minimum(n, content)
    start = (torch.rand(B * num, generator=g).to(dev) * (content - n + 1).float()).long()
    symbols = torch.tensor(vocab.symbol_ids, device=dev)
    draws = symbols[torch.randint(len(symbols), (B * num, T), generator=g).to(dev)]
    pos = torch.arange(T, device=dev)[None]
    replace = (pos >= start[:, None]) & (pos < (start + n)[:, None])
    return SequenceBatch(torch.where(replace, draws, tokens), lengths)


def ngram_log_prob(hyps: SequenceBatch, refs: SequenceBatch, vocab: Vocab, max_n: int = 4) -> Tensor:
    """[B] log s(y | y*) of :func:`ngram_replace`:
    s(y) = (1/max_n) Σ_n #{windows of width n_L = min(n, L) covering y's differences}/(L − n_L + 1) · S^{−n_L},
    on |y*|'s length (−∞ elsewhere, and where the differences span more than max_n positions)."""
    S = len(vocab.symbol_ids)
    refs = refs.to(hyps.device)
    L = (refs.lengths - 1).clamp(min=0)
    same = hyps.lengths == refs.lengths
    W = max(hyps.tokens.shape[1], refs.tokens.shape[1])
    h = torch.nn.functional.pad(hyps.tokens, (0, W - hyps.tokens.shape[1]))
    r = torch.nn.functional.pad(refs.tokens, (0, W - refs.tokens.shape[1]))
    pos = torch.arange(W, device=h.device)[None]
    diff = (h != r) & (pos < L[:, None])
    any_diff = diff.any(1)
    first = torch.where(diff, pos, torch.full_like(pos, W)).min(1).values
    last = torch.where(diff, pos, torch.full_like(pos, -1)).max(1).values
    total = torch.zeros(hyps.batch_size, dtype=torch.float64, device=h.device)
    for n in range(1, max_n + 1):  # a loop over window widths, not over the batch
        nl = torch.minimum(torch.full_like(L, n), L)
        starts = (L - nl + 1).clamp(min=1)
        lo = torch.where(any_diff, (last - nl + 1).clamp(min=0), torch.zeros_like(L))
        hi = torch.where(any_diff, torch.minimum(first, L - nl), L - nl)
        count = (hi - lo + 1).clamp(min=0).double()
        total = total + count / starts.double() * torch.exp(-nl.double() * math.log(S)) / max_n
    out = total.log()
    return torch.where(same, out, torch.full_like(out, -math.inf))


# --- data noising ([ERPO] Sec. 3.5) --------------------------------------------------------------
def unigram_distribution(data: SequenceBatch, vocab: Vocab) -> Tensor:
    """[V] frequencies u of the symbols (not EOS/PAD/BOS) in ``data`` ([ERPO] Eq. 9's unigram)."""
    tokens = data.tokens[data.mask_t & (data.tokens != vocab.eos)]
    counts = torch.bincount(tokens.cpu(), minlength=len(vocab)).double()
    if counts.sum() == 0:
        raise ValueError("empty data: no symbols to estimate a unigram distribution from")
    return counts / counts.sum()


def unigram_noise(batch: SequenceBatch, unigram: Tensor, gamma: float, eos: int,
                  generator: torch.Generator | None = None) -> SequenceBatch:
    """y_t = y*_t w.p. 1 − γ, else u-distributed, for every symbol (not the EOS) ([ERPO] Eq. 9)."""
    B, T = batch.tokens.shape
    dev = batch.device
    flip = torch.rand(B, T, generator=generator).to(dev) < gamma
    draws = torch.multinomial(unigram.float().cpu(), B * T, replacement=True, generator=generator).view(B, T).to(dev)
    symbol = batch.mask_t & (batch.tokens != eos)
    return SequenceBatch(torch.where(flip & symbol, draws, batch.tokens), batch.lengths, batch.context)


# --- override hooks ------------------------------------------------------------------------------
def reference_override(refs: SequenceBatch, use_reference: Callable[[StepInfo], Tensor]) -> OverrideHook:
    """Hook emitting y_t = y*_t wherever ``use_reference(info) → [B] bool`` holds, else π's token
    (MIXER's first m tokens, scheduled sampling's ε-coin; [ERPO] App. A, Sec. 5)."""

    def hook(info: StepInfo) -> Tensor:
        t = info.t
        if t < refs.tokens.shape[1]:
            ref_t = refs.tokens[:, t].to(info.proposed.device)
            inside = t < refs.lengths.to(info.proposed.device)
        else:
            ref_t = info.proposed
            inside = torch.zeros_like(info.finished)
        return torch.where(use_reference(info) & inside, ref_t, info.proposed)

    return hook


class MixtureRecorder:
    """Override hook: per token, z ~ (λ_model, λ_reward, λ_ref) picks p_θ^c, softmax(c·ΔR), or y*_t
    (the token-level spike-and-slab of [ERPO] Sec. 4 / Ding & Soricut's bang-bang proposal).

    Records log s(y_t) of the mixture (the proposal density) for every emitted token.
    """

    def __init__(self, reward, refs: SequenceBatch, vocab, max_len: int, weights: tuple[float, float, float],
                 sharpness: float = 1.0, reward_temperature: float = 1.0) -> None:
        self.reward, self.refs, self.vocab, self.max_len = reward, refs, vocab, max_len
        self.weights = weights
        self.c, self.tau_r = sharpness, reward_temperature
        self.log_s: list[Tensor] = []

    def component_log_probs(self, t: int, prefix: Tensor, log_probs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B, V] log-probabilities of the three components at step t."""
        dev = log_probs.device
        lam_model, lam_reward, _ = self.weights
        model = torch.log_softmax(self.c * log_probs, -1) if self.c != 1.0 else log_probs
        if lam_reward > 0:
            delta = candidate_rewards(self.reward, prefix, self.refs, self.vocab).to(dev)
            reward = torch.log_softmax(self.c * delta / self.tau_r, -1)
        else:
            reward = torch.full_like(log_probs, float("-inf"))
        ref = torch.full_like(log_probs, float("-inf"))
        if t < self.refs.tokens.shape[1]:
            inside = t < self.refs.lengths.to(dev)
            tok = torch.where(inside, self.refs.tokens[:, t].to(dev), torch.full_like(inside, self.vocab.eos,
                                                                                   dtype=torch.long))
        else:
            tok = torch.full((log_probs.shape[0],), self.vocab.eos, dtype=torch.long, device=dev)
        ref.scatter_(1, tok[:, None], 0.0)
        return model, reward, ref

    def mixture_log_probs(self, t: int, prefix: Tensor, log_probs: Tensor) -> Tensor:
        """[B, V] log Σ_z λ_z s_z(· | y_<t)."""
        parts = self.component_log_probs(t, prefix, log_probs)
        logw = torch.log(torch.tensor(self.weights, dtype=log_probs.dtype, device=log_probs.device))
        return torch.logsumexp(torch.stack([w + p for w, p in zip(logw, parts)]), 0)

    def __call__(self, info: StepInfo) -> Tensor:
        mix = self.mixture_log_probs(info.t, info.prefix, info.log_probs)
        tok = torch.multinomial(mix.exp(), 1).squeeze(1)
        chosen = mix.gather(1, tok[:, None]).squeeze(1)
        forced = info.t >= self.max_len - 1  # the sampler emits EOS there whatever we return
        self.log_s.append(torch.where(info.finished | forced, torch.zeros_like(chosen), chosen))
        return tok


def mixture_log_prob(recorder: MixtureRecorder, batch: SequenceBatch, log_dists: Tensor) -> Tensor:
    """[B] log s(y) = Σ_t log Σ_z λ_z s_z(y_t | y_<t) of whole sequences under the mixture (teacher-forced)."""
    T = batch.tokens.shape[1]
    out = torch.zeros(batch.batch_size, dtype=torch.float64)
    for t in range(T):
        mix = recorder.mixture_log_probs(t, batch.tokens[:, :t], log_dists[:, t])
        lp = mix.gather(1, batch.tokens[:, t : t + 1]).squeeze(1).double()
        counted = batch.mask_t[:, t] & (t < recorder.max_len - 1)
        out += torch.where(counted, lp, torch.zeros_like(lp))
    return out
