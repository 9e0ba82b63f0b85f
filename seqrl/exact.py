"""Exact computations on small, fully enumerable sequence spaces.

The space 𝒴(S, L) holds every sequence s_1 … s_k eos with symbols from S and k < L (so at
most L tokens, EOS included, the same convention as every policy's ``max_len``). With two
symbols and L = 8 it has 255 sequences: small enough to compute π(x) for all x, log Z of
any potential, KL both ways, TVD, E_π R, and the soft-optimal Q by backward dynamic
programming ([VAML/ERAC] Prop. 1, Cor. 1). seqrl's tests check every algorithm against
these exact quantities.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .rewards.base import Reward, compute_reward
from .types import SequenceBatch, Vocab
from .utils import eval_mode

MAX_SPACE = 2_000_000


class SpaceTooLargeError(ValueError):
    """The requested space has too many sequences to enumerate."""


def space_size(num_symbols: int, max_len: int, cap: int | None = None) -> int:
    """|𝒴| = Σ_{k<max_len} S^k; with ``cap``, the sum stops as soon as it exceeds ``cap`` (and returns that
    partial sum), so that asking about a space of 50 symbols and length 10^6 answers at once."""
    total, term = 0, 1
    for _ in range(max_len):
        total += term
        if cap is not None and total > cap:
            return total
        term *= num_symbols
    return total


def enumerate_sequences(vocab: Vocab, max_len: int, symbols: list[int] | None = None) -> SequenceBatch:
    """Every sequence of at most ``max_len`` tokens (EOS included), shortest first, then
    lexicographic in symbol order. ``symbols`` defaults to every id a policy may emit."""
    symbols = list(vocab.symbol_ids if symbols is None else symbols)
    if max_len < 1:
        raise ValueError(f"max_len must be ≥ 1, got {max_len}")
    size = space_size(len(symbols), max_len, cap=MAX_SPACE)
    if size > MAX_SPACE:
        raise SpaceTooLargeError(f"the space of |S| = {len(symbols)} symbols and max_len = {max_len} holds more "
                                 f"than {MAX_SPACE:,} sequences (of the order of {len(symbols)}^{max_len - 1}); "
                                 f"the limit for exact enumeration is {MAX_SPACE:,}")
    rows = [
        list(prefix) + [vocab.eos] for k in range(max_len) for prefix in itertools.product(symbols, repeat=k)
    ]
    return SequenceBatch.from_lists(rows, pad=vocab.pad)


def _repeat_context(context: SequenceBatch | None, n: int) -> SequenceBatch | None:
    if context is None:
        return None
    if context.batch_size != 1:
        raise ValueError("exact computations take a single context (batch of one source)")
    return SequenceBatch(context.tokens.expand(n, -1), context.lengths.expand(n), None)


MASS_TOLERANCE = 1e-6
"""|Σ_x π(x) − 1| allowed by :func:`policy_log_probs` (float64 sum of the policy's log-probabilities)."""


def policy_log_probs(policy, space: SequenceBatch, context: SequenceBatch | None = None) -> Tensor:
    """[N] log π(x) = Σ_t log π(x_t | x_<t) for every x of the space, in eval mode (differentiable),
    checked to satisfy |Σ_x π(x) − 1| ≤ 1e-6 in float64."""
    dev = policy.device
    batch = space.to(dev).with_context(_repeat_context(context.to(dev) if context is not None else None,
                                                       space.batch_size))
    with eval_mode(policy):  # dropout would score a random sub-network, not π
        logp = policy.sequence_log_prob(batch)
    mass = float(logp.detach().double().exp().sum())
    if not abs(mass - 1.0) <= MASS_TOLERANCE:
        raise ValueError(
            f"the policy puts mass {mass:.9f} ≠ 1 on the space (|Σπ − 1| > {MASS_TOLERANCE:g}): does its max_len "
            "and vocabulary match the enumerated space?"
        )
    return logp


def policy_distribution(policy, space: SequenceBatch, context: SequenceBatch | None = None) -> Tensor:
    """[N] π(x) for every x of the space (float64, no gradient)."""
    with torch.no_grad():
        return policy_log_probs(policy, space, context).double().exp().cpu()


def conditional_distributions(policy, space: SequenceBatch, prompts: SequenceBatch) -> Tensor:
    """[P, N] π(y | x) for every prompt x (a row of ``prompts``) and every completion y of the space (float64):
    π(·|x) enumerated per prompt, each checked to sum to 1."""
    return torch.stack([policy_distribution(policy, space, prompts.index([i])) for i in range(prompts.batch_size)])


def conditional_targets(log_potential, space: SequenceBatch, prompts: SequenceBatch) -> Tensor:
    """[P, N] p_x(y) = P(x, y) / Z_x per prompt (float64), from ``log_potential(batch) → [B]`` evaluated on every
    completion of the space with the prompt as the batch's context: one normalizer Z_x per prompt."""
    rows = []
    for i in range(prompts.batch_size):
        batch = space.with_context(_repeat_context(prompts.index([i]), space.batch_size))
        with torch.no_grad():
            rows.append(normalize(log_potential(batch).double().cpu()))
    return torch.stack(rows)


def log_partition(log_potential: Tensor) -> Tensor:
    """log Z = log Σ_x P(x) from [N] log-potentials over the whole space."""
    if bool((log_potential == -math.inf).all()):
        raise ValueError("the potential is -inf everywhere on the space: Z = 0, p is undefined")
    return torch.logsumexp(log_potential.double(), 0)


def normalize(log_potential: Tensor) -> Tensor:
    """p(x) = P(x) / Z over the space (float64)."""
    return (log_potential.double() - log_partition(log_potential)).exp()


def kl(p: Tensor, q: Tensor) -> float:
    """KL(p‖q) = Σ p log(p/q) in nats, with 0·log 0 = 0; +inf when q = 0 < p."""
    p, q = p.double().cpu(), q.double().cpu()
    support = p > 0
    if bool((q[support] <= 0).any()):
        return math.inf
    return float((p[support] * (p[support].log() - q[support].log())).sum())


def tvd(p: Tensor, q: Tensor) -> float:
    """Total variation distance ½ Σ |p − q|."""
    return float(0.5 * (p.double().cpu() - q.double().cpu()).abs().sum())


def expectation(p: Tensor, values: Tensor) -> Tensor:
    """E_p[f] = Σ_x p(x) f(x); ``values`` is [N] or [N, K]."""
    p = p.to(values.device, values.dtype if values.is_floating_point() else torch.float64)
    return (p.reshape(-1, *([1] * (values.dim() - 1))) * values).sum(0)


def entropy(p: Tensor) -> float:
    """H(p) = −Σ p log p in nats."""
    p = p.double()
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum())


@dataclass(frozen=True)
class SoftQTable:
    """Q(s, w) and V(s) for every prefix s of the space, by level (prefix length).

    ``q[k]`` is [S^k, V]: row i is the prefix whose symbols, read as base-S digits, give i;
    disallowed actions hold -inf. ``v[k]`` is [S^k].
    """

    vocab: Vocab
    symbols: list[int]
    max_len: int
    tau: float
    q: list[Tensor]
    v: list[Tensor]

    def sequence_log_probs(self, space: SequenceBatch) -> Tensor:
        """[N] log Π_t P_{Q}(y_t | y_<t) for every sequence of ``space``."""
        q_t = self.lookup(space)  # (N, T, V)
        logp_t = torch.log_softmax(q_t / self.tau, -1).gather(2, space.tokens[..., None]).squeeze(2)
        return torch.where(space.mask_t, logp_t, torch.zeros_like(logp_t)).sum(1)

    def prefix_index(self, batch: SequenceBatch) -> Tensor:
        """[B, T] index of the prefix y_<t within its level (−1 where undefined)."""
        digit = torch.full((len(self.vocab),), -1, dtype=torch.long)
        digit[torch.tensor(self.symbols)] = torch.arange(len(self.symbols))
        d = digit[batch.tokens.cpu()]  # (B, T)
        S = len(self.symbols)
        idx = torch.zeros(batch.batch_size, dtype=torch.long)
        out = torch.full(batch.tokens.shape, -1, dtype=torch.long)
        valid = torch.ones(batch.batch_size, dtype=torch.bool)
        for t in range(batch.tokens.shape[1]):
            out[:, t] = torch.where(valid & (t < batch.lengths.cpu()), idx, torch.full_like(idx, -1))
            valid = valid & (d[:, t] >= 0)
            idx = idx * S + d[:, t].clamp(min=0)
        return out

    def lookup(self, batch: SequenceBatch) -> Tensor:
        """[B, T, V] Q(y_<t, ·) for every position of ``batch`` (zeros on padding)."""
        index = self.prefix_index(batch)
        B, T = index.shape
        out = torch.zeros(B, T, len(self.vocab), dtype=self.q[0].dtype)
        for t in range(min(T, self.max_len)):
            rows = index[:, t]
            ok = rows >= 0
            out[ok, t] = self.q[t][rows[ok]]
        return out


def _per_prefix_rewards(reward: Reward, space: SequenceBatch, reference: SequenceBatch | None, S: int,
                        max_len: int) -> list[Tensor]:
    refs = _repeat_context(reference, space.batch_size)
    values = compute_reward(reward, space, refs).double().cpu()
    # The space lists s+eos for every prefix s, level by level, in the same order as q[k].
    out, start = [], 0
    for k in range(max_len):
        out.append(values[start : start + S**k])
        start += S**k
    return out


def soft_q_values(
    reward: Reward,
    vocab: Vocab,
    max_len: int,
    tau: float,
    reference: SequenceBatch | None = None,
    symbols: list[int] | None = None,
    policy=None,
    context: SequenceBatch | None = None,
) -> SoftQTable:
    """Soft Q/V by backward dynamic programming over the prefix tree.

    Without ``policy``: the soft-optimal values ([VAML/ERAC] Eq. 7, 8, 14, 15)
        Q(s, w) = R(s+w) − R(s) + V(s+w),  Q(s, eos) = R(s+eos) − R(s),
        V(s) = τ log Σ_w exp(Q(s, w)/τ)     (τ = 0: max_w Q(s, w)),
    whose softmax(Q/τ) induces exactly softmax(R/τ) over sequences (Prop. 1).
    With ``policy``: the soft values of that policy (Eq. 9, γ = 1, α = τ),
        V^π(s) = Σ_w π(w|s) [Q^π(s, w) − τ log π(w|s)].
    R(∅) := 0, R(s) := R(s + eos) (Eq. 4); EOS is forced at length ``max_len``.
    """
    if tau < 0:
        raise ValueError(f"τ must be ≥ 0, got {tau}")
    symbols = list(vocab.symbol_ids if symbols is None else symbols)
    S, V = len(symbols), len(vocab)
    space = enumerate_sequences(vocab, max_len, symbols)
    r = _per_prefix_rewards(reward, space, reference, S, max_len)  # r[k][i] = R(prefix_i + eos)
    log_pi: list[Tensor] | None = None
    if policy is not None:
        with torch.no_grad(), eval_mode(policy):
            dev = policy.device
            ctx = _repeat_context(context.to(dev) if context is not None else None, space.batch_size)
            dists = policy.log_dists(space.to(dev).with_context(ctx)).double().cpu()  # (N, T, V)
        log_pi, start = [], 0
        for k in range(max_len):
            log_pi.append(dists[start : start + S**k, k])  # π(·|s) for s at level k
            start += S**k
    sym = torch.tensor(symbols)
    q: list[Tensor] = [torch.empty(0)] * max_len
    v: list[Tensor] = [torch.empty(0)] * max_len
    for k in reversed(range(max_len)):
        n = S**k
        R_here = r[k] if k > 0 else torch.zeros(1, dtype=torch.float64)  # R(s), with R(∅) = 0
        qk = torch.full((n, V), -math.inf, dtype=torch.float64)
        qk[:, vocab.eos] = r[k] - R_here
        if k < max_len - 1:
            child = torch.arange(n)[:, None] * S + torch.arange(S)[None, :]  # (n, S)
            qk[:, sym] = r[k + 1][child] - R_here[:, None] + v[k + 1][child]
        if policy is None:
            vk = qk.max(-1).values if tau == 0 else tau * torch.logsumexp(qk / tau, -1)
        else:
            assert log_pi is not None
            lp = log_pi[k]
            pi = lp.exp()
            allowed = qk > -math.inf
            term = torch.where(allowed & (pi > 0), pi * (qk - tau * lp), torch.zeros_like(qk))
            vk = term.sum(-1)
        q[k], v[k] = qk, vk
    return SoftQTable(vocab, symbols, max_len, tau, q, v)
