"""The GAM motif features of [DPG] Sec. 4 / A.4, as in the authors' released code.

Seven binary features, in order: (1) x contains the motif m; (2) x contains the
"supermotif" m+'0'; (3) x contains the first half of m; (4) the first bit of x is 1;
(5) x contains '1010…' cut to |m|; (6) x contains '1001001…' cut to |m|+2; (7) x contains
'00110011…' cut to |m|//2. A mask such as ``1001111`` selects positions 1, 4, 5, 6, 7; a
leading ``Mv`` adds the length pair M = |x|/n and v = |x|²/n² ([DPG] A.4).
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from ..types import SequenceBatch, Vocab
from ..utils import motif_presence

MASK_PATTERN = re.compile(r"^(Mv)?[01]{7}$")
FEATURE_NAMES = ("motif", "supermotif", "submotif", "first_bit", "alt_10", "alt_100", "alt_0011")


class FeatureMaskError(ValueError):
    """A feature mask that is not of the form ``[Mv]bbbbbbb``."""


def parse_mask(mask: str) -> tuple[bool, list[int]]:
    """``"Mv1001111"`` → (True, [0, 3, 4, 5, 6]): the length pair flag and selected positions."""
    if not isinstance(mask, str) or not MASK_PATTERN.match(mask):
        raise FeatureMaskError(
            f"malformed feature mask {mask!r}: expected seven 0/1 flags, one per motif feature "
            f"{FEATURE_NAMES}, optionally prefixed by 'Mv' for the length pair (e.g. '1001111' or 'Mv1001111')"
        )
    with_length = mask.startswith("Mv")
    bits = mask[2:] if with_length else mask
    selected = [i for i, b in enumerate(bits) if b == "1"]
    if not selected and not with_length:
        raise FeatureMaskError(f"feature mask {mask!r} selects no feature: the GAM would be r itself; set at least "
                               "one flag (e.g. '1000000') or the length pair ('Mv0000000')")
    return with_length, selected


def feature_substrings(motif: str) -> list[str | None]:
    """The substring each binary feature tests for (None for the first-bit feature)."""
    m = len(motif)
    return [
        motif,
        motif + "0",
        motif[: m // 2],
        None,
        ("10" * m)[:m],
        ("100" * (m + 2))[: m + 2],
        ("0011" * m)[: m // 2],
    ]


class MotifFeatures:
    """φ(x) ∈ R^K for the selected features; binary ones are 0/1, M and v lie in [0, 1].

    Args:
        vocab: binary vocabulary (symbols "0", "1").
        motif: the motif m.
        mask: feature mask, e.g. ``"1001111"`` or ``"Mv1001111"``.
        length: n, the scale of the length pair (|x| counts bits, EOS excluded).
    """

    def __init__(self, vocab: Vocab, motif: str, mask: str = "1001111", length: int = 30) -> None:
        self.with_length, self.selected = parse_mask(mask)
        self.vocab, self.motif, self.mask, self.length = vocab, motif, mask, length
        subs = feature_substrings(motif)
        self._patterns: list[Tensor | None] = []
        self.names: list[str] = []
        for i in self.selected:
            s = subs[i]
            self._patterns.append(None if s is None else torch.tensor(vocab.encode(list(s), add_eos=False)))
            self.names.append(FEATURE_NAMES[i])
        if self.with_length:
            self.names += ["M", "v"]
        self._one = vocab.stoi["1"]
        self._achievable: dict[int, list[Tensor]] = {}

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def binary(self) -> list[bool]:
        return [True] * len(self.selected) + [False, False] * self.with_length

    def __call__(self, batch: SequenceBatch) -> Tensor:
        """[B, K] features of each sequence."""
        cols = []
        for pattern in self._patterns:
            if pattern is None:
                cols.append(((batch.tokens[:, 0] == self._one) & (batch.lengths > 1)).float())
            else:
                cols.append(motif_presence(batch, pattern.to(batch.device)).float())
        if self.with_length:
            bits = (batch.lengths - 1).float() / self.length
            cols += [bits, bits**2]
        return torch.stack(cols, 1)

    def max_dot(self, lam: Tensor, max_bits: int) -> float:
        """max_x λ·φ(x) over every x of at most ``max_bits`` bits, exactly: the max over the binary
        feature patterns achievable at each length k (:meth:`achievable_patterns`) plus λ_M k/n + λ_v k²/n²
        ([DPG] A.2: the tightest rejection-sampling bound log β for proposal r, P_λ/r = e^{λ·φ})."""
        lam = lam.detach().double().cpu()
        nb = len(self.selected)
        best = -math.inf
        for k, patterns in enumerate(self.achievable_patterns(max_bits)):
            value = float((patterns @ lam[:nb]).max()) if nb else 0.0
            if self.with_length:
                m = k / self.length
                value += float(lam[nb]) * m + float(lam[nb + 1]) * m * m
            best = max(best, value)
        return best

    def achievable_patterns(self, max_bits: int) -> list[Tensor]:
        """[P_k, K_binary] float64 0/1: every distinct binary feature vector of a k-bit string, k = 0…max_bits.

        A DP over strings that keeps, per length, the reachable (longest suffix that is a prefix of
        a feature substring — an Aho–Corasick state —, substrings seen so far, first bit) triples;
        exact, and cached per ``max_bits``."""
        if max_bits in self._achievable:
            return self._achievable[max_bits]
        subs = [None if p is None else tuple(p.tolist()) for p in self._patterns]
        prefixes = {s[:i] for s in subs if s is not None for i in range(len(s) + 1)} | {()}

        def advance(state: tuple[int, ...], symbol: int) -> tuple[tuple[int, ...], int]:
            nxt = state + (symbol,)
            while nxt not in prefixes:
                nxt = nxt[1:]
            hits = sum(1 << i for i, s in enumerate(subs) if s is not None and nxt[len(nxt) - len(s):] == s)
            return nxt, hits

        first_mask = sum(1 << i for i, s in enumerate(subs) if s is None)
        empty = sum(1 << i for i, s in enumerate(subs) if s == ())  # "" occurs in every string
        frontier: set[tuple[tuple[int, ...], int]] = {((), empty)}
        step_cache: dict[tuple[tuple[int, ...], int], tuple[tuple[int, ...], int]] = {}
        levels = [{empty}]
        for k in range(1, max_bits + 1):
            nxt_frontier: set[tuple[tuple[int, ...], int]] = set()
            for state, seen in frontier:
                for symbol in self.vocab.symbol_ids:
                    key = (state, symbol)
                    if key not in step_cache:
                        step_cache[key] = advance(state, symbol)
                    state2, hits = step_cache[key]
                    first = first_mask if (k == 1 and symbol == self._one) else 0
                    nxt_frontier.add((state2, seen | hits | first))
            frontier = nxt_frontier
            levels.append({seen for _, seen in frontier})
        nb = len(subs)
        out = [torch.tensor([[(seen >> i) & 1 for i in range(nb)] for seen in sorted(level)], dtype=torch.float64)
               for level in levels]
        self._achievable[max_bits] = out
        return out
