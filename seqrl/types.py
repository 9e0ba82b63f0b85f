"""Vocabularies and padded batches of sequences.

Conventions used across seqrl:

* A sequence is a list of token ids that ends with EOS; its *length* counts the EOS.
  BOS is never stored in a batch: policies prepend it themselves.
* ``max_len`` is the longest a sequence may be, EOS included. A policy that has produced
  ``max_len - 1`` symbols must emit EOS next (the VAML/ERAC paper's "we enforce the
  generation of eos" at length T), which makes every sequence space finite and every
  policy a normalized distribution over it.
* Per-token tensors end in ``_t`` ([B, T]); per-sequence tensors do not ([B]).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
UnknownPolicy = Literal["error", "map"]


class VocabError(ValueError):
    """A token or id that the vocabulary cannot represent."""


class Vocab:
    """Token ↔ id mapping with PAD (0), BOS (1), EOS (2) and, if ``unknown="map"``, UNK (3).

    Args:
        symbols: the content symbols, in id order after the specials. Duplicates and
            names of special tokens are rejected.
        unknown: what :meth:`encode` does with a symbol it does not know: ``"error"``
            raises :class:`VocabError`; ``"map"`` maps it to ``<unk>``.
    """

    def __init__(self, symbols: Sequence[str], unknown: UnknownPolicy = "error") -> None:
        if unknown not in ("error", "map"):
            raise VocabError(f"unknown={unknown!r}: expected 'error' or 'map'")
        symbols = list(symbols)
        if not symbols:
            raise VocabError("a vocabulary needs at least one symbol besides the specials")
        specials = [PAD, BOS, EOS] + ([UNK] if unknown == "map" else [])
        clash = sorted(set(symbols) & {PAD, BOS, EOS, UNK})
        if clash:
            raise VocabError(f"symbols {clash} are reserved special tokens")
        dupes = sorted(s for s, c in Counter(symbols).items() if c > 1)
        if dupes:
            raise VocabError(f"duplicate symbols in vocabulary: {dupes[:10]}")
        if any((not s) or any(ch.isspace() for ch in s) for s in symbols):
            raise VocabError("symbols must be non-empty and contain no whitespace")
        self.unknown: UnknownPolicy = unknown
        self.itos: list[str] = specials + symbols
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.pad, self.bos, self.eos = 0, 1, 2
        self.unk: int | None = 3 if unknown == "map" else None

    # --- sizes and masks -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(tuple(self.itos))

    def __repr__(self) -> str:
        shown = self.symbols[:8]
        more = "" if len(self.symbols) <= 8 else f", … (+{len(self.symbols) - 8})"
        return f"Vocab({shown}{more}, unknown={self.unknown!r})"

    @property
    def symbols(self) -> list[str]:
        """Content symbols, without specials."""
        return self.itos[3 if self.unk is None else 4:]

    @property
    def symbol_ids(self) -> list[int]:
        """Ids a policy may emit other than EOS (UNK included when present)."""
        first = 3
        return list(range(first, len(self.itos)))

    def generatable_mask(self) -> Tensor:
        """Bool [V]: True for ids a policy may emit (symbols, UNK, EOS; never PAD or BOS)."""
        mask = torch.ones(len(self), dtype=torch.bool)
        mask[self.pad] = False
        mask[self.bos] = False
        return mask

    # --- strings <-> ids ---------------------------------------------------------------
    def encode(self, text: str | Sequence[str], add_eos: bool = True) -> list[int]:
        """Whitespace-split ``text`` (or take a list of symbols) and map it to ids."""
        tokens = text.split() if isinstance(text, str) else list(text)
        ids: list[int] = []
        for tok in tokens:
            idx = self.stoi.get(tok)
            if idx is None or idx in (self.pad, self.bos, self.eos):
                if self.unk is None:
                    raise VocabError(
                        f"unknown symbol {tok!r}; known symbols: {self.symbols[:20]}"
                        + (" …" if len(self.symbols) > 20 else "")
                        + " (build the Vocab with unknown='map' to map it to <unk>)"
                    )
                idx = self.unk
            ids.append(idx)
        if add_eos:
            ids.append(self.eos)
        return ids

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Map ids to symbols; with ``strip`` stop at EOS and drop PAD/BOS."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i < 0 or i >= len(self.itos):
                raise VocabError(f"id {i} outside vocabulary of size {len(self)}")
            if strip:
                if i == self.eos:
                    break
                if i in (self.pad, self.bos):
                    continue
            out.append(self.itos[i])
        return out

    def to_string(self, ids: Iterable[int], sep: str = " ") -> str:
        return sep.join(self.decode(ids))

    def state_dict(self) -> dict:
        return {"symbols": self.symbols, "unknown": self.unknown}

    @classmethod
    def from_state_dict(cls, state: dict) -> Vocab:
        return cls(state["symbols"], unknown=state["unknown"])

    @classmethod
    def build(
        cls, texts: Iterable[str | Sequence[str]], min_freq: int = 1, unknown: UnknownPolicy = "map"
    ) -> Vocab:
        """A vocabulary of every whitespace token seen at least ``min_freq`` times, by frequency."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text.split() if isinstance(text, str) else text)
        kept = [s for s, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq]
        if not kept:
            raise VocabError("cannot build a vocabulary from empty data")
        return cls(kept, unknown=unknown)


class BatchError(ValueError):
    """A batch whose tensors do not have the shapes or contents seqrl expects."""


@dataclass(frozen=True)
class SequenceBatch:
    """Right-padded token ids [B, T], their lengths [B] (EOS included), optional context.

    ``context`` is the source side of a conditional task, itself a :class:`SequenceBatch`
    with the same batch size (its own vocabulary and lengths).
    """

    tokens: Tensor
    lengths: Tensor
    context: SequenceBatch | None = field(default=None)

    def __post_init__(self) -> None:
        if self.tokens.dim() != 2:
            raise BatchError(f"tokens must be [B, T], got shape {tuple(self.tokens.shape)}")
        if self.tokens.dtype != torch.long or self.lengths.dtype != torch.long:
            raise BatchError("tokens and lengths must be torch.long tensors")
        if self.lengths.shape != (self.tokens.shape[0],):
            raise BatchError(
                f"lengths must be [B]={self.tokens.shape[0]}, got shape {tuple(self.lengths.shape)}"
            )
        if self.context is not None and self.context.batch_size != self.batch_size:
            raise BatchError(
                f"context has batch size {self.context.batch_size}, targets have {self.batch_size}"
            )

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    @property
    def mask_t(self) -> Tensor:
        """Bool [B, T]: True on real tokens (EOS included), False on padding."""
        steps = torch.arange(self.tokens.shape[1], device=self.tokens.device)
        return steps[None, :] < self.lengths[:, None]

    def to(self, device: torch.device | str) -> SequenceBatch:
        ctx = self.context.to(device) if self.context is not None else None
        return SequenceBatch(self.tokens.to(device), self.lengths.to(device), ctx)

    def index(self, idx: Tensor | slice | list[int]) -> SequenceBatch:
        """Rows ``idx`` of the batch (and of its context), trimmed to their longest row."""
        tokens, lengths = self.tokens[idx], self.lengths[idx]
        width = int(lengths.max()) if lengths.numel() else 0
        ctx = self.context.index(idx) if self.context is not None else None
        return SequenceBatch(tokens[:, :width], lengths, ctx)

    def clone(self) -> SequenceBatch:
        """A copy that shares no storage with this batch (what a plug-in gets, so that writing into it changes
        nothing seqrl keeps)."""
        ctx = self.context.clone() if self.context is not None else None
        return SequenceBatch(self.tokens.clone(), self.lengths.clone(), ctx)

    def repeat_interleave(self, times: int) -> SequenceBatch:
        """Each row (and its context row) ``times`` times in place: rows 0,0,…,1,1,…"""
        if times == 1:
            return self
        idx = torch.arange(self.batch_size, device=self.device).repeat_interleave(times)
        ctx = self.context.repeat_interleave(times) if self.context is not None else None
        return SequenceBatch(self.tokens[idx], self.lengths[idx], ctx)

    def with_context(self, context: SequenceBatch | None) -> SequenceBatch:
        return replace(self, context=context)

    def to_lists(self) -> list[list[int]]:
        """Each row as a list of ids, EOS included, padding dropped."""
        rows = self.tokens.tolist()
        return [row[:n] for row, n in zip(rows, self.lengths.tolist())]

    def validate(self, vocab: Vocab, max_len: int | None = None) -> None:
        """Check ids are in range, every row ends with exactly one EOS, and lengths ≥ 1."""
        if self.batch_size == 0:
            raise BatchError("empty batch: expected at least one sequence")
        if bool((self.lengths < 1).any()):
            raise BatchError("every sequence needs length ≥ 1 (at least the EOS)")
        if self.tokens.shape[1] < int(self.lengths.max()):
            raise BatchError("a length exceeds the padded width T of the batch")
        if max_len is not None and int(self.lengths.max()) > max_len:
            raise BatchError(
                f"a sequence has length {int(self.lengths.max())} > max_len={max_len} (EOS included)"
            )
        if bool(((self.tokens < 0) | (self.tokens >= len(vocab))).any()):
            raise BatchError(f"token ids outside [0, {len(vocab)})")
        mask = self.mask_t
        last = self.tokens.gather(1, (self.lengths - 1)[:, None]).squeeze(1)
        if bool((last != vocab.eos).any()):
            raise BatchError("every sequence must end with EOS at position length-1")
        eos_count = ((self.tokens == vocab.eos) & mask).sum(1)
        if bool((eos_count != 1).any()):
            raise BatchError("a sequence contains EOS before its end")
        if bool((((self.tokens == vocab.pad) | (self.tokens == vocab.bos)) & mask).any()):
            raise BatchError("PAD or BOS inside a sequence")

    @classmethod
    def from_lists(
        cls,
        rows: Sequence[Sequence[int]],
        pad: int = 0,
        device: torch.device | str | None = None,
        context: SequenceBatch | None = None,
    ) -> SequenceBatch:
        """Pad id lists (each already ending in EOS) into a batch."""
        if len(rows) == 0:
            raise BatchError("empty data: expected at least one sequence")
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        batch = cls(tokens, lengths, context)
        return batch.to(device) if device is not None else batch

    @classmethod
    def from_strings(
        cls, texts: Sequence[str | Sequence[str]], vocab: Vocab, context: SequenceBatch | None = None
    ) -> SequenceBatch:
        return cls.from_lists([vocab.encode(t) for t in texts], pad=vocab.pad, context=context)

    def to_strings(self, vocab: Vocab) -> list[str]:
        return [vocab.to_string(row) for row in self.to_lists()]


def concat_batches(batches: Sequence[SequenceBatch], pad: int = 0) -> SequenceBatch:
    """Stack batches row-wise, padding to the widest."""
    if not batches:
        raise BatchError("nothing to concatenate")
    width = max(b.tokens.shape[1] for b in batches)
    tokens = torch.cat(
        [torch.nn.functional.pad(b.tokens, (0, width - b.tokens.shape[1]), value=pad) for b in batches]
    )
    lengths = torch.cat([b.lengths for b in batches])
    ctxs = [b.context for b in batches]
    if all(c is None for c in ctxs):
        ctx = None
    elif any(c is None for c in ctxs):
        raise BatchError("cannot concatenate batches with and without context")
    else:
        ctx = concat_batches([c for c in ctxs if c is not None], pad=pad)
    return SequenceBatch(tokens, lengths, ctx)


def check_vocab(policy: object, data: SequenceBatch | Vocab | None, what: str = "the data") -> None:
    """Raise :class:`VocabError` if ``policy`` cannot read ``data``: a :class:`Vocab` that differs from
    ``policy.vocab``, or a batch holding token ids ≥ ``len(policy.vocab)`` (or, for a conditional policy,
    source ids ≥ ``len(policy.source_vocab)``, or no sources at all). The message names both sizes.

    Called by :func:`seqrl.training.fit` on the training data before anything is computed. Does nothing
    for ``data=None`` or an object without a ``vocab`` (an EBM, say).
    """
    vocab = getattr(policy, "vocab", None)
    if data is None or not isinstance(vocab, Vocab):
        return
    fix = "build the policy with the task's vocabularies (make_policy(name, task.vocab, task.max_len, " \
          "source_vocab=task.source_vocab))"
    if isinstance(data, Vocab):
        if data != vocab:
            differ = next((f" (id {i}: {a!r} vs {b!r})" for i, (a, b) in enumerate(zip(vocab.itos, data.itos))
                           if a != b), "")
            raise VocabError(f"the policy's vocabulary ({len(vocab)} ids) differs from {what}'s ({len(data)} ids)"
                             f"{differ}; {fix}")
        return
    sides: list[tuple[str, SequenceBatch, Vocab]] = [("target", data, vocab)]
    if getattr(policy, "is_conditional", False):
        source_vocab = getattr(policy, "source_vocab", None)
        if data.context is None:
            raise VocabError(f"{type(policy).__name__} is conditional but {what} has no sources (context=None); "
                             "train it on a conditional task's split")
        if isinstance(source_vocab, Vocab):
            sides.append(("source", data.context, source_vocab))
    for side, batch, side_vocab in sides:
        if batch.tokens.numel() == 0:
            continue
        top, low = int(batch.tokens.max()), int(batch.tokens.min())
        if top >= len(side_vocab) or low < 0:
            bad = top if top >= len(side_vocab) else low
            which = "" if side == "target" else "source "
            raise VocabError(f"{what} holds {side} token id {bad} but the policy's {which}vocabulary has "
                             f"{len(side_vocab)} ids [0, {len(side_vocab)}) (the data needs ≥ {top + 1}); {fix}")
