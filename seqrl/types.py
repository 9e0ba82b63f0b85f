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

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

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

    def decode(self, ids: Iterable[int] | SequenceBatch | Sequence[Sequence[int]] | Tensor,
               strip: bool = True) -> list[str]:
        """Map ids to symbols; with ``strip`` stop at EOS and drop PAD/BOS.

        Given a whole batch instead (a :class:`SequenceBatch`, a [B, T] tensor or a list of id lists), the text
        of each row: its symbols joined by spaces (what a text-level reward receives; a :class:`TokenizerVocab`
        gives the tokenizer's text instead)."""
        rows = batch_rows(ids)
        if rows is not None:
            return [" ".join(self.decode(row, strip)) for row in rows]
        out: list[str] = []
        for i in cast(Iterable[int], ids):  # one row: batch_rows took every batch
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
        """The vocabulary :meth:`state_dict` describes (a :class:`TokenizerVocab` when it names a tokenizer)."""
        if "tokenizer" in state:
            return TokenizerVocab.from_state_dict(state)
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


def batch_rows(ids: object) -> list[list[int]] | None:
    """The rows of a batch given as a :class:`SequenceBatch` (each row up to its length), a [B, T] tensor or a
    list of id lists; None for a single row of ids."""
    if isinstance(ids, SequenceBatch):
        return ids.to_lists()
    if isinstance(ids, Tensor):
        return [list(row) for row in ids.tolist()] if ids.dim() == 2 else None
    if isinstance(ids, list | tuple) and ids and all(
            isinstance(r, list | tuple) or (isinstance(r, Tensor) and r.dim() == 1) for r in ids):
        return [[int(i) for i in row] for row in ids]
    return None


_TOKENIZER_SPECIALS = ("pad_token", "bos_token", "eos_token", "unk_token")


class TokenizerVocab(Vocab):
    """A Hugging Face tokenizer's vocabulary as a seqrl :class:`Vocab` (built by
    :func:`seqrl.policies.hf.tokenizer_vocab`).

    seqrl ids 0, 1, 2 are PAD, BOS, EOS as everywhere in seqrl; they stand for the tokenizer's pad, bos and eos
    ids (a tokenizer without a pad or a bos token uses its eos for it: GPT-2's one ``<|endoftext|>`` is all
    three). seqrl ids 3, 4, … are the tokenizer's other ids in increasing order. ``model_ids`` (a LongTensor) is
    the model's id of each seqrl id; ``tokenizer`` is the tokenizer itself.

    * :meth:`decode` of a batch (a :class:`SequenceBatch`, a [B, T] tensor, a list of id lists) gives each row's
      text, decoded by the tokenizer (``skip_special_tokens=True``, as TRL decodes completions); with
      ``strip=True`` (the default) a row ends at its EOS and PAD/BOS are dropped. Of one row of ids it gives the
      tokens' strings, like :meth:`Vocab.decode`; :meth:`to_string` gives one row's text.
    * :meth:`encode_prompts` turns prompt texts into a context batch: each text's ids exactly as the tokenizer
      gives them (its own special tokens, such as a Llama BOS, included; nothing added by seqrl), lengths = the
      number of prompt tokens. :meth:`encode` of a text (a completion, a target) uses no special tokens and
      ends it with EOS.
    * :meth:`state_dict` keeps the tokenizer with it (a fast tokenizer's JSON, else its directory), so that
      checkpoints of a policy with this vocabulary load back (:meth:`Vocab.from_state_dict`); a policy is saved
      for transformers with :meth:`seqrl.policies.hf.HFCausalLMPolicy.save_pretrained`.
    """

    def __init__(self, tokenizer: object) -> None:
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise VocabError("the tokenizer defines no EOS token (eos_token): seqrl ends every sequence with one; "
                             "set tokenizer.eos_token before building the vocabulary")
        bos = getattr(tokenizer, "bos_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        bos = eos if bos is None else bos
        pad = eos if pad is None else pad
        known = sorted(set(tokenizer.get_vocab().values()))  # type: ignore[attr-defined]
        model_ids = [pad, bos, eos] + [i for i in known if i not in (pad, bos, eos)]
        tokens = tokenizer.convert_ids_to_tokens(model_ids)  # type: ignore[attr-defined]
        self.tokenizer = tokenizer
        self.unknown = "error"
        self.unk = None
        self.pad, self.bos, self.eos = 0, 1, 2
        self.itos = [str(t) if t is not None else f"<id {m}>" for t, m in zip(tokens, model_ids)]
        self.stoi = {s: i for i, s in enumerate(self.itos) if i > 2}
        for i in (2, 1, 0):  # the specials' strings name EOS first (GPT-2's <|endoftext|>)
            self.stoi.setdefault(self.itos[i], i)
        self.model_ids = torch.tensor(model_ids, dtype=torch.long)
        to_seqrl = torch.full((max(model_ids) + 1,), -1, dtype=torch.long)
        to_seqrl[self.model_ids[3:]] = torch.arange(3, len(model_ids))
        for i, m in ((2, eos), (0, pad), (1, bos)):  # a prompt's special token: BOS first, then PAD, then EOS
            to_seqrl[m] = i
        self._to_seqrl = to_seqrl

    def __repr__(self) -> str:
        name = getattr(self.tokenizer, "name_or_path", "") or type(self.tokenizer).__name__
        return f"TokenizerVocab({name!r}, {len(self)} ids)"

    # --- ids -----------------------------------------------------------------------------------------------
    def seqrl_ids(self, model_ids: Sequence[int]) -> list[int]:
        """The seqrl ids of the tokenizer's ``model_ids`` (a VocabError names an id the tokenizer does not list)."""
        ids = torch.as_tensor(list(model_ids), dtype=torch.long)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self._to_seqrl)
                            or bool((self._to_seqrl[ids] < 0).any())):
            bad = [int(i) for i in ids if i < 0 or i >= len(self._to_seqrl) or self._to_seqrl[i] < 0][0]
            raise VocabError(f"the tokenizer gave id {bad}, which its vocabulary does not list")
        return self._to_seqrl[ids].tolist()

    def model_rows(self, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        """Rows of seqrl ids as the tokenizer's (the model's) ids."""
        table = self.model_ids.tolist()
        return [[table[int(i)] for i in row] for row in rows]

    def _stripped(self, row: Sequence[int]) -> list[int]:
        out: list[int] = []
        for i in row:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(int(i))
        return out

    # --- text ----------------------------------------------------------------------------------------------
    def decode(self, ids: Iterable[int] | SequenceBatch | Sequence[Sequence[int]] | Tensor,
               strip: bool = True) -> list[str]:
        """Texts of a batch's rows (by the tokenizer), or the token strings of one row (see the class)."""
        rows = batch_rows(ids)
        if rows is None:
            return super().decode(ids, strip)
        if strip:
            rows = [self._stripped(row) for row in rows]
        for row in rows:
            if row and (min(row) < 0 or max(row) >= len(self)):
                raise VocabError(f"id {min(row) if min(row) < 0 else max(row)} outside vocabulary of size {len(self)}")
        texts = self.tokenizer.batch_decode(self.model_rows(rows), skip_special_tokens=True)  # type: ignore[attr-defined]
        return [str(t) for t in texts]

    def to_string(self, ids: Iterable[int], sep: str = " ") -> str:
        """One row's text as the tokenizer writes it (``sep`` is not used: the tokenizer places the spaces)."""
        return self.decode([list(ids)])[0]

    def encode(self, text: str | Sequence[str], add_eos: bool = True) -> list[int]:
        """A text's ids by the tokenizer, without its special tokens, then EOS (a list of token strings is mapped
        one by one, as :meth:`Vocab.encode` does)."""
        if not isinstance(text, str):
            return super().encode(text, add_eos)
        ids = self.seqrl_ids(self.tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
        return ids + ([self.eos] if add_eos else [])

    def encode_prompts(self, texts: Sequence[str], device: torch.device | str | None = None) -> SequenceBatch:
        """Prompt texts as a context batch: each text's ids exactly as the tokenizer gives them, nothing added
        (no EOS: a prompt is continued, not ended); ``lengths`` are the numbers of prompt tokens."""
        if isinstance(texts, str) or not texts:
            raise BatchError("encode_prompts takes a non-empty list of prompt texts")
        rows = [self.seqrl_ids(self.tokenizer(t)["input_ids"]) for t in texts]  # type: ignore[operator]
        return SequenceBatch.from_lists(rows, pad=self.pad, device=device)

    # --- saving --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Data only: the symbols, the id map and the tokenizer (a fast tokenizer's JSON and special tokens; a
        slow one is named by its directory, which must still hold it when the state is loaded)."""
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None)
        specials = {k: str(getattr(tok, k)) for k in _TOKENIZER_SPECIALS if isinstance(getattr(tok, k, None), str)}
        clean = getattr(tok, "clean_up_tokenization_spaces", None)
        return {"symbols": self.itos[3:], "unknown": "error", "model_ids": self.model_ids.tolist(),
                "tokenizer": {"json": backend.to_str() if backend is not None else None,
                              "name_or_path": str(getattr(tok, "name_or_path", "") or ""),
                              "special_tokens": specials,
                              "clean_up_tokenization_spaces": clean if isinstance(clean, bool) else None}}

    @classmethod
    def from_state_dict(cls, state: dict) -> TokenizerVocab:
        """The vocabulary :meth:`state_dict` wrote, its tokenizer rebuilt without any download."""
        info = state["tokenizer"]
        try:
            import transformers
        except ImportError:
            raise VocabError("this vocabulary is a Hugging Face tokenizer's: loading it needs transformers "
                             "(pip install seqrl[hf])") from None
        tokenizer: Any
        if info.get("json"):
            from tokenizers import Tokenizer

            options = {} if info.get("clean_up_tokenization_spaces") is None else {
                "clean_up_tokenization_spaces": info["clean_up_tokenization_spaces"]}
            tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(info["json"]),
                                                             **info.get("special_tokens", {}), **options)
        elif info.get("name_or_path") and os.path.isdir(info["name_or_path"]):
            tokenizer = transformers.AutoTokenizer.from_pretrained(info["name_or_path"], local_files_only=True)
        else:
            raise VocabError(f"cannot rebuild the tokenizer of this vocabulary: it was not a fast tokenizer and its "
                             f"directory {info.get('name_or_path')!r} is gone")
        vocab = cls(tokenizer)
        if vocab.model_ids.tolist() != list(state["model_ids"]):
            raise VocabError("the rebuilt tokenizer maps ids differently from the saved vocabulary")
        return vocab
