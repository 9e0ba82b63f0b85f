"""Critics: Q(y_<t, w; y*) over the whole vocabulary for every prefix ([VAML/ERAC] Sec. 4).

The interface (what ERAC and VAML use)
--------------------------------------
A critic is an ``nn.Module`` (:class:`Critic`) called as ::

    q_t = critic(batch, reference)        # [B, T, V]

* ``batch``: a :class:`~seqrl.types.SequenceBatch` of prefixes/sequences y (right-padded, EOS
  included), its ``context`` the source x for conditional tasks (or None).
* ``reference``: the reference y* of every row, a SequenceBatch with ``B`` rows and no context
  (the "oracle" critic reads y*, [VAML/ERAC] Sec. 4.1); None where the reward needs none.
* ``q_t[b, t, w] = Q(y_<t, w; y*)``: row t scores every next token w after the prefix y_<t, aligned
  with the policy's ``log_dists(batch)[b, t]`` = log π(· | y_<t, x). Values are unbounded reals.
* Masking is the policy's (:func:`mask_q`, the same rule as ``AutoregressivePolicy.mask_logits``):
  PAD/BOS (every id the vocab says a policy cannot emit) hold -inf at every position, and only EOS is
  finite at positions ≥ ``max_len − 1`` (EOS forced at the last position). Positions at or beyond a
  row's length hold values that mean nothing; mask them with ``batch.mask_t``.
* Helpers that handle the -inf entries without NaNs: :func:`allowed` ([B, T, V] finite entries),
  :func:`expected_q` (Σ_w π(w) Q(w)), :func:`entropy_t` (H(π(·|y_<t))), :func:`gather_q` (Q(y_<t, y_t)),
  :func:`variance_penalty` (the smoothing term).

Implementations
---------------
* :class:`NetworkCritic`: an attention encoder–decoder (seqrl's :class:`~seqrl.policies.Seq2SeqPolicy`
  network) whose encoder reads y* (and, built with ``source_vocab``, the source x before it) and whose
  decoder reads the prefix; its V outputs per position are the Q-values. Serves ERAC and VAML, for
  conditional and unconditional policies alike.
* :class:`TabularCritic`: one learnable value per (prefix, token) of an enumerable space (prefixes
  indexed as in :class:`seqrl.exact.SoftQTable`); for one reference. Used by the exact tests.
* :class:`TargetCritic`: the delayed copy Q_φ̄ updated by Polyak averaging φ̄ ← β·φ + (1 − β)·φ̄
  ([VAML/ERAC] Sec. 4.2, Alg. 3 line 11); β = 1 means no target network (it *is* the critic).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import Tensor, nn

from .types import SequenceBatch, Vocab


# --- masking and per-token helpers ----------------------------------------------------------------
def allowed_ids(vocab: Vocab, max_len: int, T: int, device: torch.device | str = "cpu") -> Tensor:
    """[T, V] bool: ids a policy may emit at position t (all generatable ids; only EOS at t ≥ max_len − 1)."""
    gen = vocab.generatable_mask().to(device)
    eos_only = torch.zeros_like(gen)
    eos_only[vocab.eos] = True
    last = (torch.arange(T, device=device) >= max_len - 1)[:, None]
    return torch.where(last, eos_only[None], gen[None])


def mask_q(q_t: Tensor, vocab: Vocab, max_len: int) -> Tensor:
    """[B, T, V] Q-values with -inf where the policy's log_dists hold -inf (PAD/BOS; all but EOS at the end)."""
    ok = allowed_ids(vocab, max_len, q_t.shape[1], q_t.device)
    return q_t.masked_fill(~ok[None], -math.inf)


def allowed(q_t: Tensor) -> Tensor:
    """[B, T, V] bool: the finite (allowed) entries of a masked Q or log-distribution."""
    return torch.isfinite(q_t)


def expected_q(log_pi_t: Tensor, q_t: Tensor) -> Tensor:
    """[B, T] Σ_w π(w|y_<t) Q(y_<t, w), over the allowed w only (no 0·(−inf))."""
    ok = allowed(q_t) & allowed(log_pi_t)
    zero = torch.zeros_like(q_t)  # select before multiplying: a 0·(−inf) branch poisons gradients with NaN
    return (torch.where(ok, log_pi_t.exp(), zero) * torch.where(ok, q_t, zero)).sum(-1)


def entropy_t(log_pi_t: Tensor) -> Tensor:
    """[B, T] H(π(·|y_<t)) = −Σ_w π(w) log π(w) (0·log 0 = 0)."""
    ok = allowed(log_pi_t)
    log_pi0 = torch.where(ok, log_pi_t, torch.zeros_like(log_pi_t))
    return -(log_pi0.exp() * log_pi0 * ok).sum(-1)


def gather_q(q_t: Tensor, tokens: Tensor) -> Tensor:
    """[B, T] Q(y_<t, y_t) of the batch's own tokens (0 where that entry is masked, e.g. PAD on padding)."""
    q = q_t.gather(2, tokens.unsqueeze(2)).squeeze(2)
    return torch.where(torch.isfinite(q), q, torch.zeros_like(q))


def variance_penalty(q_t: Tensor, mask_t: Tensor, lambda_var: float = 1.0,
                     reduction: Literal["sum", "variance"] = "sum") -> Tensor:
    """[B] λ_var Σ_t Σ_w (Q(y_<t, w) − Q̄(y_<t))², Q̄ = (1/|𝒲|) Σ_w' Q(y_<t, w') ([VAML/ERAC] Sec. 4.2, Alg. 3 l.7).

    𝒲 is the set of allowed (finite) ids at each position; ``mask_t`` [B, T] selects the valid positions.
    ``reduction="variance"`` divides each position's sum by |𝒲| − 1: the sample variance of Q over the vocabulary,
    which the authors' code takes (``Q_all.var(2)`` in ``train_critic.py`` / ``train_erac.py`` of
    zihangdai/ERAC-VAML) and the paper's Sec. 4.2 calls "the variance of Q-values"; the sum of Alg. 3 is |𝒲| − 1
    times stronger at the same λ_var.
    """
    if reduction not in ("sum", "variance"):
        raise ValueError(f"reduction must be 'sum' or 'variance', got {reduction!r}")
    ok = allowed(q_t)
    q0 = torch.where(ok, q_t, torch.zeros_like(q_t))
    n = ok.sum(-1, keepdim=True).clamp(min=1)
    mean = q0.sum(-1, keepdim=True) / n
    sq = torch.where(ok, (q0 - mean) ** 2, torch.zeros_like(q0)).sum(-1)  # (B, T)
    if reduction == "variance":
        sq = sq / (n.squeeze(-1) - 1).clamp(min=1)
    return lambda_var * torch.where(mask_t, sq, torch.zeros_like(sq)).sum(1)


# --- the interface ----------------------------------------------------------------------------------
class Critic(nn.Module):
    """Base class: ``forward(batch, reference) → [B, T, V]`` masked Q(y_<t, ·; y*) (see the module docstring)."""

    vocab: Vocab
    max_len: int

    def forward(self, batch: SequenceBatch, reference: SequenceBatch | None = None) -> Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


class NetworkCritic(Critic):
    """Q_φ(y_<t, ·; y*) = W_o a_t of an attention encoder–decoder ([VAML/ERAC] Sec. 4.1, 6.1, Alg. 3).

    The encoder (Bi-LSTM) reads the reference y* (the oracle critic's context); the decoder (LSTM with
    dot-product attention over the encoder states and input feeding) reads BOS, y_1, …, y_{T−1}; its V
    outputs per position are unbounded Q-values, masked by :func:`mask_q`. It reuses the
    :class:`~seqrl.policies.Seq2SeqPolicy` network (its logits, without the softmax). Without a reference
    it reads a lone EOS.

    The paper's critic is Q_φ(y_<t, y_t; y*) (Alg. 3), and the authors' ``train_critic.py`` encodes y*
    alone, so by default the source x is not read. With ``source_vocab`` (conditional tasks) the encoder
    reads x followed by y* (Q_φ(y_<t, ·; x, y*)): one sequence over a joint vocabulary in which x's ids
    keep their values and y*'s are shifted by |V_x|, so attention spans both; a batch must then carry x
    as its ``context``.
    """

    def __init__(self, vocab: Vocab, max_len: int, *, source_vocab: Vocab | None = None, embedding_dim: int = 64,
                 hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        from .policies.seq2seq import Seq2SeqPolicy

        self.vocab, self.max_len, self.source_vocab = vocab, max_len, source_vocab
        encoder_vocab = vocab if source_vocab is None else Vocab(
            [f"x:{s}" for s in source_vocab.itos[3:]] + [f"y:{s}" for s in vocab.itos])  # x ids kept, y* ids + |V_x|
        self.net = Seq2SeqPolicy(vocab, max_len, source_vocab=encoder_vocab, embedding_dim=embedding_dim,
                                 hidden_size=hidden_size, num_layers=num_layers, dropout=dropout)

    @property
    def reads_source(self) -> bool:
        """Whether the encoder reads the source x (built with ``source_vocab``)."""
        return self.source_vocab is not None

    @classmethod
    def for_policy(cls, policy, *, reads_source: bool = False, **kwargs) -> NetworkCritic:
        """A critic sized like ``policy`` (its embedding/hidden sizes when it has them), on its device;
        ``reads_source``: a conditional policy's critic also reads x (an unconditional one has none)."""
        cfg = getattr(policy, "config", {}) or {}
        sizes = {k: cfg[k] for k in ("embedding_dim", "hidden_size") if isinstance(cfg.get(k), int)}
        if reads_source and getattr(policy, "is_conditional", False):
            kwargs.setdefault("source_vocab", policy.source_vocab)
        return cls(policy.vocab, policy.max_len, **{**sizes, **kwargs}).to(policy.device)

    def encoder_input(self, batch: SequenceBatch, reference: SequenceBatch) -> SequenceBatch:
        """What the encoder reads: y*, or with ``source_vocab`` x then y* (ids shifted by |V_x|), right-padded."""
        if self.source_vocab is None:
            return reference.with_context(None)
        if batch.context is None:
            raise ValueError("this NetworkCritic reads the source x (built with source_vocab), and the batch "
                             "has no context")
        x, y = batch.context.to(reference.device), reference
        lx, ly = x.lengths, y.lengths
        B, width = x.batch_size, int((lx + ly).max())
        pos = torch.arange(width, device=x.device)[None].expand(B, -1)
        from_x = x.tokens.gather(1, pos.clamp(max=x.tokens.shape[1] - 1))
        from_y = y.tokens.gather(1, (pos - lx[:, None]).clamp(0, y.tokens.shape[1] - 1)) + len(self.source_vocab)
        tokens = torch.where(pos < lx[:, None], from_x,
                             torch.where(pos < (lx + ly)[:, None], from_y, torch.zeros_like(from_y)))
        return SequenceBatch(tokens, lx + ly)

    def forward(self, batch: SequenceBatch, reference: SequenceBatch | None = None) -> Tensor:
        dev = self.net.device
        if reference is None:
            eos = torch.full((batch.batch_size, 1), self.vocab.eos, dtype=torch.long, device=dev)
            reference = SequenceBatch(eos, torch.ones(batch.batch_size, dtype=torch.long, device=dev))
        if reference.batch_size != batch.batch_size:
            raise ValueError(f"reference has {reference.batch_size} rows, batch {batch.batch_size}")
        encoded = self.encoder_input(batch, reference.with_context(None).to(dev))
        q_t = self.net.teacher_forced_logits(SequenceBatch(batch.tokens.to(dev), batch.lengths.to(dev), encoded))
        return mask_q(q_t, self.vocab, self.max_len)


def prefix_index(batch: SequenceBatch, vocab: Vocab, symbols: list[int]) -> Tensor:
    """[B, T] index of y_<t within its level (symbols read as base-S digits, as in exact.SoftQTable); −1 where
    undefined (beyond the row's length, or after a non-symbol token)."""
    digit = torch.full((len(vocab),), -1, dtype=torch.long)
    digit[torch.tensor(symbols)] = torch.arange(len(symbols))
    d = digit[batch.tokens.cpu()]
    S, (B, T) = len(symbols), batch.tokens.shape
    idx = torch.zeros(B, dtype=torch.long)
    out = torch.full((B, T), -1, dtype=torch.long)
    valid = torch.ones(B, dtype=torch.bool)
    lengths = batch.lengths.cpu()
    for t in range(T):
        out[:, t] = torch.where(valid & (t < lengths), idx, torch.full_like(idx, -1))
        valid = valid & (d[:, t] >= 0)
        idx = idx * S + d[:, t].clamp(min=0)
    return out


class TabularCritic(Critic):
    """Q(s, w) = table[level(s)][index(s), w], a free parameter per (prefix, token) of 𝒴(S, max_len), for
    one reference (the reference argument is ignored); prefixes indexed as in :class:`seqrl.exact.SoftQTable`,
    so ``critic.table[k]`` compares entry by entry with ``soft_q_values(...).q[k]`` on the allowed entries."""

    def __init__(self, vocab: Vocab, max_len: int, symbols: list[int] | None = None, init: float = 0.0) -> None:
        super().__init__()
        self.vocab, self.max_len = vocab, max_len
        self.symbols = list(vocab.symbol_ids if symbols is None else symbols)
        S, V = len(self.symbols), len(vocab)
        self.table = nn.ParameterList([nn.Parameter(torch.full((S**k, V), float(init))) for k in range(max_len)])

    def forward(self, batch: SequenceBatch, reference: SequenceBatch | None = None) -> Tensor:
        index = prefix_index(batch, self.vocab, self.symbols).to(self.device)
        B, T = index.shape
        rows = []
        for t in range(T):
            if t < self.max_len:
                rows.append(self.table[t][index[:, t].clamp(min=0)] * (index[:, t] >= 0)[:, None])
            else:
                rows.append(self.table[0].new_zeros(B, len(self.vocab)))
        return mask_q(torch.stack(rows, 1), self.vocab, self.max_len)

    def masked_tables(self) -> list[Tensor]:
        """[S^k, V] per level with -inf on disallowed ids (detached), comparable with SoftQTable.q."""
        out = []
        for k, table in enumerate(self.table):
            ok = allowed_ids(self.vocab, self.max_len, self.max_len, table.device)[k]
            out.append(table.detach().masked_fill(~ok[None], -math.inf))
        return out


class TargetCritic(nn.Module):
    """The delayed critic Q_φ̄ of [VAML/ERAC] Alg. 3: φ̄ = φ at start, then φ̄ ← β·φ + (1 − β)·φ̄ per :meth:`update`.

    β = 1: no target network, calls go to the critic itself (no copy is kept). The copy never
    requires gradients; calls run the critic (or the copy) and return detached values.
    """

    def __init__(self, critic: Critic, beta: float) -> None:
        super().__init__()
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"target network rate β must be in (0, 1], got {beta}")
        self.beta = float(beta)
        self._online = [critic]  # a list: not registered a second time as a submodule
        self.copy: Critic | None = None
        if beta < 1.0:
            self.copy = copy.deepcopy(critic)
            for p in self.copy.parameters():
                p.requires_grad_(False)

    @property
    def network(self) -> Critic:
        """The module whose values are the target's (the copy, or the critic itself when β = 1)."""
        return self.copy if self.copy is not None else self._online[0]

    def forward(self, batch: SequenceBatch, reference: SequenceBatch | None = None) -> Tensor:
        with torch.no_grad():
            return self.network(batch, reference).detach()

    @torch.no_grad()
    def update(self) -> None:
        """φ̄ ← β·φ + (1 − β)·φ̄ for every parameter (and floating buffer) of the critic."""
        if self.copy is None:
            return
        online = self._online[0]
        for p_bar, p in zip(self.copy.parameters(), online.parameters(), strict=True):
            p_bar.mul_(1.0 - self.beta).add_(p.detach(), alpha=self.beta)
        for b_bar, b in zip(self.copy.buffers(), online.buffers(), strict=True):
            if b_bar.is_floating_point():
                b_bar.mul_(1.0 - self.beta).add_(b, alpha=self.beta)
            else:
                b_bar.copy_(b)


__all__ = [
    "Critic", "NetworkCritic", "TabularCritic", "TargetCritic", "allowed", "allowed_ids", "entropy_t",
    "expected_q", "gather_q", "mask_q", "prefix_index", "variance_penalty",
]
