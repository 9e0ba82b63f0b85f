"""Tasks: a vocabulary, a max length, a default reward and train/valid/test splits.

A split is one :class:`~seqrl.types.SequenceBatch` of targets whose ``context`` holds the
sources (conditional tasks) or is None (unconditional ones).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..registry import Registry
from ..types import UNK, BatchError, SequenceBatch, Vocab, VocabError

SPLITS = ("train", "valid", "test")

MAX_SYMBOLS = 1_000_000
"""Largest vocabulary a built-in task makes (each symbol is a row of every policy's embedding and output)."""
MAX_LENGTH = 10_000
"""Longest sequence a built-in task makes."""
MAX_SPLIT_TOKENS = 100_000_000
"""Most tokens (sequences × max length) in one split: 0.75 GiB as int64, before any policy sees it."""


def check_task_size(owner: str, *, sizes: dict[str, int] | None = None, max_length: int | None = None,
                    symbols: dict[str, int] | None = None) -> None:
    """Refuse a task whose data would not fit, before anything is allocated: every split non-negative and at most
    :data:`MAX_SPLIT_TOKENS` tokens, lengths ≤ :data:`MAX_LENGTH`, symbol counts ≤ :data:`MAX_SYMBOLS`; each
    error names the setting and the figure."""
    from ..config import check_size

    for name, count in (symbols or {}).items():
        check_size(f"{owner} {name}", count, MAX_SYMBOLS, unit=" symbols")
    if max_length is not None:
        check_size(f"{owner} max length", max_length, MAX_LENGTH, unit=" tokens")
    for name, size in (sizes or {}).items():
        if size < 0:
            raise ValueError(f"{owner} {name} must be ≥ 0, got {size}")
        width = (max_length or 1) + 1
        check_size(f"{owner} {name}", size, MAX_SPLIT_TOKENS // width, unit=" sequences", bytes_each=8 * width)


def split_generator(seed: int, split: str) -> torch.Generator:
    """A torch generator seeded from (seed, split): each split its own stream."""
    state = np.random.SeedSequence([seed, SPLITS.index(split)])
    return torch.Generator().manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] >> 1))


def split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split)])


class Task:
    """Base of every task. Subclasses set ``vocab``, ``source_vocab``, ``max_len`` and provide
    ``split(name)``."""

    name = "task"
    default_reward = "bleu"
    vocab: Vocab
    source_vocab: Vocab | None
    max_len: int

    @property
    def is_conditional(self) -> bool:
        return self.source_vocab is not None

    def split(self, name: str) -> SequenceBatch:
        raise NotImplementedError

    def reward_kwargs(self) -> dict[str, Any]:
        """Keyword arguments the task's default reward needs (e.g. the motif)."""
        return {}

TASKS: Registry[type[Task]] = Registry("task", group="seqrl.envs")  # installed packages add tasks (environments)


def register_task(name: str, cls: type[Task]) -> type[Task]:
    return TASKS.register(name, cls)


def make_task(name: str, **kwargs: Any) -> Task:
    return TASKS.get(name)(**kwargs)


class PairTask(Task):
    """A conditional task held as three lists of (source, target) symbol lists."""

    source_vocab: Vocab  # always set: a pair task is conditional

    def __init__(
        self,
        pairs: dict[str, list[tuple[list[str], list[str]]]],
        vocab: Vocab,
        source_vocab: Vocab,
        max_len: int | None = None,
    ) -> None:
        for split in SPLITS:
            if not pairs.get(split):
                raise BatchError(f"empty data: split {split!r} has no sentence pairs")
        self.vocab, self.source_vocab = vocab, source_vocab
        longest = max(len(t) for rows in pairs.values() for _, t in rows) + 1
        self.max_len = max_len if max_len is not None else longest
        self._pairs = pairs
        self._splits: dict[str, SequenceBatch] = {}

    def split(self, name: str) -> SequenceBatch:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLITS}")
        if name not in self._splits:
            rows = self._pairs[name]
            src = SequenceBatch.from_lists([self.source_vocab.encode(s) for s, _ in rows], pad=self.source_vocab.pad)
            tgt = [self.vocab.encode(t) for _, t in rows]
            self._splits[name] = SequenceBatch.from_lists(tgt, pad=self.vocab.pad, context=src)
        return self._splits[name]

    def pairs(self, name: str) -> list[tuple[list[str], list[str]]]:
        return self._pairs[name]


class CopyTask(PairTask):
    """Copy a random string of symbols: y = x. The identity task every algorithm must learn."""

    name = "copy"
    default_reward = "bleu"

    def __init__(
        self,
        num_symbols: int = 8,
        min_length: int = 3,
        max_length: int = 8,
        *,
        train_size: int = 2000,
        valid_size: int = 200,
        test_size: int = 200,
        seed: int = 0,
    ) -> None:
        if not 1 <= min_length <= max_length:
            raise ValueError(f"need 1 ≤ min_length ≤ max_length, got {min_length}, {max_length}")
        if num_symbols < 1:
            raise ValueError(f"num_symbols must be ≥ 1, got {num_symbols}")
        check_task_size(type(self).__name__, symbols={"num_symbols": num_symbols}, max_length=max_length,
                        sizes={"train_size": train_size, "valid_size": valid_size, "test_size": test_size})
        symbols = [f"s{i}" for i in range(num_symbols)]
        vocab = Vocab(symbols)
        sizes = {"train": train_size, "valid": valid_size, "test": test_size}
        pairs: dict[str, list[tuple[list[str], list[str]]]] = {}
        for split, size in sizes.items():
            rng = split_rng(seed, split)
            rows: list[tuple[list[str], list[str]]] = []
            for _ in range(size):
                n = int(rng.integers(min_length, max_length + 1))
                src = [symbols[i] for i in rng.integers(0, num_symbols, n)]
                rows.append((src, self.transform(src)))
            pairs[split] = rows
        super().__init__(pairs, vocab, vocab, max_len=max_length + 1)

    @staticmethod
    def transform(src: list[str]) -> list[str]:
        return list(src)


class ReverseTask(CopyTask):
    """Reverse a random string of symbols: y = x read backwards."""

    name = "reverse"

    @staticmethod
    def transform(src: list[str]) -> list[str]:
        return list(reversed(src))


class ToyTranslationTask(PairTask):
    """Synthetic translation with exposure bias to overcome.

    Sources come from a small random grammar: clauses ``D (A){0,2} N V D (A){0,2} N [P D N]``
    joined by ``and``. Targets translate word by word through a fixed random lexicon (some
    words become two target words), with local reordering (adjectives after their noun)
    and, on the training split only, token noise with probability ``noise``. With ``zipf`` = s > 0,
    the k-th word of each open class (nouns, verbs, adjectives) is drawn with probability
    ∝ (k + 1)^−s, as in natural text: a long tail of rare words keeps the task from saturating
    once the alignment is learned.
    """

    name = "toy_translation"
    default_reward = "bleu"

    def __init__(
        self,
        *,
        num_nouns: int = 30,
        num_verbs: int = 15,
        num_adjectives: int = 15,
        min_target_length: int = 15,
        max_target_length: int = 25,
        noise: float = 0.0,
        zipf: float = 0.0,
        two_word_fraction: float = 0.2,
        train_size: int = 2000,
        valid_size: int = 200,
        test_size: int = 500,
        seed: int = 0,
        lexicon_seed: int = 7,
    ) -> None:
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"noise must be in [0, 1), got {noise}")
        if not 0.0 <= zipf <= 100.0:
            raise ValueError(f"zipf must be in [0, 100], got {zipf}")
        if not 0.0 <= two_word_fraction <= 1.0:
            raise ValueError(f"two_word_fraction must be in [0, 1], got {two_word_fraction}")
        if not 1 <= min_target_length <= max_target_length:
            raise ValueError("need 1 ≤ min_target_length ≤ max_target_length")
        if min(num_nouns, num_verbs, num_adjectives) < 1:
            raise ValueError("num_nouns, num_verbs and num_adjectives must be ≥ 1")
        check_task_size(type(self).__name__, max_length=2 * max_target_length,
                        symbols={"num_nouns + num_verbs + num_adjectives": num_nouns + num_verbs + num_adjectives},
                        sizes={"train_size": train_size, "valid_size": valid_size, "test_size": test_size})
        lex_rng = np.random.default_rng(lexicon_seed)
        classes = {
            "D": [f"d{i}" for i in range(3)],
            "N": [f"n{i}" for i in range(num_nouns)],
            "V": [f"v{i}" for i in range(num_verbs)],
            "A": [f"a{i}" for i in range(num_adjectives)],
            "P": [f"p{i}" for i in range(3)],
            "C": ["and"],
        }
        self.word_class = {w: c for c, ws in classes.items() for w in ws}
        source_words = [w for ws in classes.values() for w in ws]
        target_words = [f"T{i}" for i in range(int(len(source_words) * 1.3))]
        self.lexicon: dict[str, list[str]] = {}
        perm = lex_rng.permutation(len(target_words))
        for i, w in enumerate(source_words):
            first = target_words[perm[i % len(perm)]]
            if lex_rng.random() < two_word_fraction:
                second = target_words[perm[(i + len(source_words)) % len(perm)]]
                self.lexicon[w] = [first, second]
            else:
                self.lexicon[w] = [first]
        self.classes = classes
        self.noise = noise
        self._word_probs: dict[str, np.ndarray | None] = {c: _zipf_probs(len(ws), zipf) for c, ws in classes.items()}
        vocab = Vocab(sorted({t for ts in self.lexicon.values() for t in ts} | set(target_words)))
        source_vocab = Vocab(source_words)
        sizes = {"train": train_size, "valid": valid_size, "test": test_size}
        window = (min_target_length, max_target_length)
        pairs = {split: self._draw_pairs(split_rng(seed, split), size, window, target_words,
                                         noise if split == "train" else 0.0)
                 for split, size in sizes.items()}
        super().__init__(pairs, vocab, source_vocab, max_len=max_target_length + 1)

    def _draw_pairs(self, rng: np.random.Generator, size: int, window: tuple[int, int], target_words: list[str],
                    noise: float) -> list[tuple[list[str], list[str]]]:
        """``size`` (sentence, translation) pairs whose translation length lies in ``window``, the translation's
        tokens replaced by random target words with probability ``noise``."""
        rows: list[tuple[list[str], list[str]]] = []
        draws = 0
        while len(rows) < size:
            draws += 1
            if draws > 1000 + 200 * size and len(rows) < draws / 200:  # the length window is (nearly) empty
                raise ValueError(f"ToyTranslationTask: {len(rows)} of {draws} sentences have a target of "
                                 f"{window[0]}–{window[1]} words; widen min/max_target_length")
            src = self._sentence(rng)
            tgt = self.translate(src)
            if not window[0] <= len(tgt) <= window[1]:
                continue
            if noise > 0:
                tgt = [target_words[rng.integers(len(target_words))] if rng.random() < noise else t for t in tgt]
            rows.append((src, tgt))
        return rows

    def _word(self, rng: np.random.Generator, word_class: str) -> str:
        words, probs = self.classes[word_class], self._word_probs[word_class]
        return words[rng.integers(len(words)) if probs is None else rng.choice(len(words), p=probs)]

    def _np(self, rng: np.random.Generator) -> list[str]:
        words = [self._word(rng, "D")]
        words += [self._word(rng, "A") for _ in range(int(rng.integers(0, 3)))]
        words.append(self._word(rng, "N"))
        return words

    def _sentence(self, rng: np.random.Generator) -> list[str]:
        words: list[str] = []
        for clause in range(int(rng.integers(1, 4))):
            if clause:
                words.append("and")
            words += self._np(rng) + [self._word(rng, "V")] + self._np(rng)
            if rng.random() < 0.4:
                words += [self._word(rng, "P")] + self._np(rng)
        return words

    def translate(self, src: list[str]) -> list[str]:
        """Lexical translation with adjectives moved after the noun they precede."""
        out: list[str] = []
        pending_adjectives: list[str] = []
        for w in src:
            if self.word_class[w] == "A":
                pending_adjectives.append(w)
                continue
            out += self.lexicon[w]
            if self.word_class[w] == "N":
                for a in pending_adjectives:
                    out += self.lexicon[a]
                pending_adjectives = []
        return out


def _zipf_probs(n: int, exponent: float) -> np.ndarray | None:
    """p_k ∝ k^−s for k = 1..n; None for s = 0 (uniform, drawn as before so data sets are unchanged)."""
    if exponent == 0.0:
        return None
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


class DataFileError(BatchError):
    """A data file seqrl cannot read as parallel text; the message names the file (and line)."""


MAX_LINE_BYTES = 256 * 1024
"""Longest line :func:`read_text_pairs` accepts (bytes); longer ones are an error, not data."""
_RESERVED_TOKENS = ("<pad>", "<bos>", "<eos>")  # "<unk>" in the data maps to the unknown token
_MAGIC = {b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "a zip archive", b"BZh": "bzip2-compressed",
          b"\xfd7zXZ": "xz-compressed", b"\xff\xfe": "UTF-16 text", b"\xfe\xff": "UTF-16 text"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes (BOM stripped), or a :class:`DataFileError`: missing, a directory, unreadable, empty or an
    archive/UTF-16 file."""
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory; expected a text file of sentence pairs")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})") from None
    raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    if not raw.strip():
        raise DataFileError(f"{path}: empty data: the file is empty; expected lines of text")
    for magic, kind in _MAGIC.items():
        if raw.startswith(magic):
            raise DataFileError(f"{path}: {kind}, not UTF-8 text; convert it to plain UTF-8 text first")
    return raw


def _decode_line(path: Path, lineno: int, line: bytes, max_line_bytes: int) -> str:
    """One line as text (CR LF accepted), or the error naming the file, the line and what is wrong with it."""
    if len(line) > max_line_bytes:
        raise DataFileError(
            f"{path}:{lineno}: line of {len(line):,} bytes exceeds the limit of {max_line_bytes:,} bytes "
            "(is this a text file of sentence pairs, one per line?)"
        )
    nul = line.find(b"\0")
    if nul >= 0:
        raise DataFileError(f"{path}:{lineno}: binary data (NUL byte at column {nul + 1}); expected UTF-8 text")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(
            f"{path}:{lineno}: not UTF-8 text (byte 0x{line[err.start]:02x} at column {err.start + 1}); "
            "re-encode the file as UTF-8"
        ) from None
    return text[:-1] if text.endswith("\r") else text


def _read_lines(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> list[str]:
    """The lines of a UTF-8 text file (BOM stripped, CR LF accepted), or a :class:`DataFileError` naming
    the file and line: missing, a directory, empty, binary, not UTF-8, or a line over ``max_line_bytes``."""
    raw = _read_bytes(path)
    lines = [_decode_line(path, lineno, line, max_line_bytes) for lineno, line in enumerate(raw.split(b"\n"), 1)]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _tokens(path: Path, lineno: int, text: str, side: str) -> list[str]:
    tokens = text.split()
    if not tokens:
        raise DataFileError(f"{path}:{lineno}: empty {side} side; expected at least one token on each side")
    for tok in tokens:
        if tok in _RESERVED_TOKENS:
            raise DataFileError(
                f"{path}:{lineno}: token {tok!r} on the {side} side is reserved (seqrl adds {tok} itself); remove it"
            )
    return tokens


def _read_numbered_pairs(
    source: Path, target: Path | None, max_line_bytes: int = MAX_LINE_BYTES
) -> list[tuple[int, list[str], list[str]]]:
    """(line number, source tokens, target tokens) for every non-blank line; see :func:`read_text_pairs`."""
    rows: list[tuple[int, list[str], list[str]]] = []
    if target is None:
        for lineno, line in enumerate(_read_lines(source, max_line_bytes), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                got = "no TAB" if len(fields) == 1 else f"{len(fields)} fields ({len(fields) - 1} TABs)"
                raise DataFileError(f"{source}:{lineno}: expected 'source<TAB>target', got {got}")
            rows.append((lineno, _tokens(source, lineno, fields[0], "source"),
                         _tokens(source, lineno, fields[1], "target")))
    else:
        src_lines, tgt_lines = _read_lines(source, max_line_bytes), _read_lines(target, max_line_bytes)
        if len(src_lines) != len(tgt_lines):
            raise DataFileError(f"{source} has {len(src_lines)} lines but {target} has {len(tgt_lines)}; "
                                "expected aligned files, one sentence per line")
        for lineno, (s, t) in enumerate(zip(src_lines, tgt_lines), 1):
            if not s.strip() and not t.strip():
                continue
            rows.append((lineno, _tokens(source, lineno, s, "source"), _tokens(target, lineno, t, "target")))
    if not rows:
        raise DataFileError(f"{source}: empty data: no sentence pairs (only blank lines)")
    return rows


def read_text_pairs(
    source: str | Path, target: str | Path | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> list[tuple[list[str], list[str]]]:
    """Sentence pairs from a TSV file (source<TAB>target per line) or from two aligned files.

    Files must be UTF-8 (a BOM is stripped; CR LF line ends are fine). Tokens are whitespace-separated;
    blank lines are skipped. Raises :class:`DataFileError` (a ``ValueError``) naming the file and line on
    a missing file, a directory, an empty or binary file, bytes that are not UTF-8, a line over
    ``max_line_bytes``, a row without exactly one TAB, an empty side, a reserved token, or misaligned files.
    """
    rows = _read_numbered_pairs(Path(source), None if target is None else Path(target), max_line_bytes)
    return [(s, t) for _, s, t in rows]


def _check_cap(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
        raise ValueError(f"{name}={value!r}: expected a positive number of tokens (or None for no cap)")


class TextPairTask(PairTask):
    """A user's parallel text (IWSLT-style). Vocabularies come from the training split;
    unseen tokens (and ``<unk>`` in the data) map to ``<unk>``. Without valid/test files, the
    training pairs are split (by ``seed``) 90/5/5.

    Pairs with more than ``max_source_len`` source tokens or ``max_target_len`` target tokens
    (or ``max_len - 1``, when ``max_len`` is given) are dropped before splitting, with a warning;
    ``dropped`` counts them (``dropped_by_file`` per file). A cap of None keeps every pair.
    Unreadable files raise :class:`DataFileError` naming the file and line (see :func:`read_text_pairs`).
    """

    name = "text_pairs"
    default_reward = "bleu"

    def __init__(
        self,
        train: str | Path,
        valid: str | Path | None = None,
        test: str | Path | None = None,
        *,
        train_target: str | Path | None = None,
        valid_target: str | Path | None = None,
        test_target: str | Path | None = None,
        min_freq: int = 1,
        max_len: int | None = None,
        max_source_len: int | None = 200,
        max_target_len: int | None = 200,
        max_line_bytes: int = MAX_LINE_BYTES,
        seed: int = 0,
    ) -> None:
        if isinstance(min_freq, bool) or not isinstance(min_freq, int | np.integer) or min_freq < 1:
            raise ValueError(f"min_freq={min_freq!r}: expected an integer ≥ 1")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int | np.integer)
                                    or max_len < 2):
            raise ValueError(f"max_len={max_len!r}: expected an integer ≥ 2 (one symbol plus EOS) or None")
        _check_cap("max_source_len", max_source_len)
        _check_cap("max_target_len", max_target_len)
        _check_cap("max_line_bytes", max_line_bytes)
        for split, side, target in (("valid", valid, valid_target), ("test", test, test_target)):
            if target is not None and side is None:
                raise ValueError(f"{split}_target={str(target)!r} given without {split}=<source file>")
        target_cap = max_target_len
        if max_len is not None:
            target_cap = max_len - 1 if target_cap is None else min(target_cap, max_len - 1)
        self.dropped_by_file: dict[str, int] = {}
        files = {"train": (train, train_target), "valid": (valid, valid_target), "test": (test, test_target)}
        data: dict[str, list[tuple[list[str], list[str]]]] = {}
        for split, (source, target) in files.items():
            if source is None:
                continue
            numbered = _read_numbered_pairs(Path(source), None if target is None else Path(target), max_line_bytes)
            data[split] = self._cap(numbered, Path(source), max_source_len, target_cap)
        if "valid" not in data or "test" not in data:
            rows = data["train"]
            order = np.random.default_rng(seed).permutation(len(rows))
            n_hold = max(1, len(rows) // 20)
            if len(rows) < 3 * n_hold or len(rows) < 3:
                raise DataFileError(f"{train}: only {len(rows)} sentence pairs, too few to split into train/valid/"
                                    "test (need ≥ 3, or pass valid= and test= files)")
            held = {"valid": order[:n_hold], "test": order[n_hold : 2 * n_hold]}
            for name, idx in held.items():
                data.setdefault(name, [rows[i] for i in idx])
            data["train"] = [rows[i] for i in order[2 * n_hold :]]
        self.dropped = sum(self.dropped_by_file.values())
        try:
            vocab = Vocab.build(([w for w in t if w != UNK] for _, t in data["train"]), min_freq=min_freq)
            source_vocab = Vocab.build(([w for w in s if w != UNK] for s, _ in data["train"]), min_freq=min_freq)
        except VocabError:
            raise DataFileError(f"{train}: no token occurs min_freq={min_freq} times in the training pairs; "
                                "lower min_freq") from None
        super().__init__(data, vocab, source_vocab, max_len=max_len)

    def _cap(
        self, rows: list[tuple[int, list[str], list[str]]], path: Path, source_cap: int | None, target_cap: int | None
    ) -> list[tuple[list[str], list[str]]]:
        kept = [(s, t) for _, s, t in rows if (source_cap is None or len(s) <= source_cap)
                and (target_cap is None or len(t) <= target_cap)]
        dropped = len(rows) - len(kept)
        if not dropped:
            return kept
        first = next(n for n, s, t in rows if (source_cap is not None and len(s) > source_cap)
                     or (target_cap is not None and len(t) > target_cap))
        caps = f"max_source_len={source_cap}, max_target_len={target_cap} tokens"
        if not kept:
            raise DataFileError(f"{path}: all {len(rows)} sentence pairs exceed {caps}; raise the caps")
        self.dropped_by_file[str(path)] = dropped
        warnings.warn(f"{path}: dropped {dropped} of {len(rows)} sentence pairs longer than {caps} "
                      f"(first at line {first}); raise the caps to keep them", stacklevel=3)
        return kept


register_task("copy", CopyTask)
register_task("reverse", ReverseTask)
register_task("toy_translation", ToyTranslationTask)
register_task("text_pairs", TextPairTask)
