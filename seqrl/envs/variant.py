"""A synthetic seq2seq task whose references vary: several valid outputs per source.

See :class:`VariantTranslationTask` and docs/seq2seq-task.md for why it was chosen.
"""

from __future__ import annotations

import numpy as np

from ..types import Vocab
from .tasks import PairTask, register_task, split_rng

PARTICLE = "la"


class VariantTranslationTask(PairTask):
    """Monotone word-by-word translation with references that vary, and a rule over the history.

    A source is ``min_length``–``max_length`` words drawn uniformly from ``num_words``. Each word
    has one target word with two forms, register 0 (``t7``) and register 1 (``t7'``). Each word is
    *ambiguous* with probability ``synonym_fraction`` (drawn once, from ``lexicon_seed``): at each
    occurrence of an ambiguous word the reference draws its register afresh, 1 with probability
    ``minority`` (nothing in the source tells which). With ``agreement``, every other word takes the
    register of the target word before it (a rule over the history of the output: one register draw
    decides the forms of the words after it, up to the next ambiguous word); without it, those words
    have only register 0. Each word takes the particle with probability ``particle_fraction`` (drawn
    once); after such a word the reference adds ``la`` with probability ``particle_prob`` (an optional
    word: the reference length varies too).

    So: (1) the reference is one draw from a distribution of valid outputs, and the best any decoder
    can do is a ceiling below 100 BLEU (:meth:`token_ceiling` per token). MLE learns that distribution
    and its beam search seeks the mode (:meth:`translate` without a generator), while BLEU rewards
    matching the drawn reference. With ``particle_prob`` = 0.4 the mode omits every particle, is
    too short for BLEU's brevity penalty, and decodes that add some particles score higher. That is
    the metric/likelihood mismatch that RAML, VAML and ERPO's interpolation address. (2) With
    ``agreement`` the right next word depends on the decoder's own earlier words, so at test time its
    own choices, not the reference's, condition what follows. That is exposure bias, which MIXER,
    scheduled sampling, SPG, AC and ERAC address. ``test_min_length``/``test_max_length`` give the
    test split its own source lengths (longer than training: errors compound over more steps).
    The sentences are drawn from ``seed``, each split its own stream. The defaults are the task
    chosen by measurement in docs/seq2seq-task.md (with the seq2seq suite's 1000/100/200 pairs).
    """

    name = "variant_translation"
    default_reward = "bleu"

    def __init__(
        self,
        *,
        num_words: int = 24,
        min_length: int = 8,
        max_length: int = 16,
        test_min_length: int | None = None,
        test_max_length: int | None = None,
        synonym_fraction: float = 0.5,
        minority: float = 0.2,
        agreement: bool = True,
        particle_fraction: float = 0.3,
        particle_prob: float = 0.4,
        train_size: int = 2000,
        valid_size: int = 200,
        test_size: int = 500,
        seed: int = 0,
        lexicon_seed: int = 7,
    ) -> None:
        test_min = min_length if test_min_length is None else test_min_length
        test_max = max_length if test_max_length is None else test_max_length
        if not 1 <= min_length <= max_length or not 1 <= test_min <= test_max:
            raise ValueError("need 1 ≤ min_length ≤ max_length (and the same for the test lengths)")
        if num_words < 1:
            raise ValueError(f"num_words must be ≥ 1, got {num_words}")
        for key, value in (("synonym_fraction", synonym_fraction), ("minority", minority),
                           ("particle_fraction", particle_fraction), ("particle_prob", particle_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {value}")
        lex_rng = np.random.default_rng(lexicon_seed)
        self.source_words = [f"w{i}" for i in range(num_words)]
        self.ambiguous = {w: bool(a) for w, a in zip(self.source_words, lex_rng.random(num_words) < synonym_fraction)}
        self.takes_particle = {w: bool(a) for w, a in
                               zip(self.source_words, lex_rng.random(num_words) < particle_fraction)}
        self.minority, self.agreement, self.particle_prob = minority, agreement, particle_prob
        two_forms = {w for w in self.source_words if self.ambiguous[w] or agreement}
        targets = [f"t{i}" for i in range(num_words)] + [f"t{i}'" for i, w in enumerate(self.source_words)
                                                         if w in two_forms]
        if particle_fraction > 0 and particle_prob > 0:
            targets.append(PARTICLE)
        vocab, source_vocab = Vocab(targets), Vocab(self.source_words)
        lengths = {"train": (min_length, max_length), "valid": (min_length, max_length), "test": (test_min, test_max)}
        sizes = {"train": train_size, "valid": valid_size, "test": test_size}
        pairs: dict[str, list[tuple[list[str], list[str]]]] = {}
        for split, size in sizes.items():
            rng = split_rng(seed, split)
            lo, hi = lengths[split]
            rows = []
            for _ in range(size):
                src = [self.source_words[i] for i in rng.integers(0, num_words, int(rng.integers(lo, hi + 1)))]
                rows.append((src, self.translate(src, rng)))
            pairs[split] = rows
        longest = max(max_length, test_max) * (2 if particle_fraction > 0 and particle_prob > 0 else 1)
        super().__init__(pairs, vocab, source_vocab, max_len=longest + 1)

    @staticmethod
    def _form(word: str, register: int) -> str:
        return f"t{word[1:]}" + ("'" if register else "")

    def translate(self, src: list[str], rng: np.random.Generator | None = None) -> list[str]:
        """One reference for ``src`` drawn with ``rng``; without it, the most probable one (every
        register choice and particle at its mode; the decode a perfect model's beam search returns)."""
        out: list[str] = []
        register = 0
        for w in src:
            if self.ambiguous[w]:
                draw = rng.random() < self.minority if rng is not None else self.minority > 0.5
                register = int(draw)
            elif not self.agreement:
                register = 0
            out.append(self._form(w, register))
            if self.takes_particle[w] and self.particle_prob > 0:
                if (rng.random() < self.particle_prob) if rng is not None else self.particle_prob > 0.5:
                    out.append(PARTICLE)
        return out

    def token_ceiling(self, split: str) -> float:
        """The best expected next-token accuracy under teacher forcing on ``split``, EOS counted: the
        mean over reference positions of the largest probability the generating process gives any next
        token there, given the source and the reference prefix (what a perfect model scores). Only
        register draws (max(minority, 1 − minority)) and particle slots are uncertain; every other
        token follows from the source and the prefix."""
        probs = [p for src, ref in self.pairs(split) for p in self._position_max_probs(src, ref)]
        return float(np.mean(probs))

    def _position_max_probs(self, src: list[str], ref: list[str]) -> list[float]:
        p = self.particle_prob
        out: list[float] = []
        j, slot = 0, False  # slot: the word before takes the particle and it may still come
        for w in [*src, None]:  # None: the EOS position
            top = max(self.minority, 1 - self.minority) if w is not None and self.ambiguous[w] else 1.0
            if slot:
                out.append(max(p, (1 - p) * top))
                if ref[j:j + 1] == [PARTICLE]:
                    j += 1
                    out.append(top)
            else:
                out.append(top)
            j += 1
            slot = w is not None and self.takes_particle[w] and p > 0
        return out


register_task("variant_translation", VariantTranslationTask)
