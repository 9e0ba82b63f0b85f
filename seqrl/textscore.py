"""Text scores on whitespace-tokenized strings (sacrebleu, rouge-score): what the BLEU/ROUGE rewards, the
evaluations and the benchmark tables share. Plain strings in, numbers out: no seqrl type is needed here."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence


class WhitespaceTokenizer:
    """rouge-score's tokenizer interface, splitting on whitespace (seqrl's symbols are whitespace-free tokens)."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


def corpus_bleu(hyps: list[str], refs: list[str]) -> float:
    """Corpus BLEU (sacrebleu, 0–100) on whitespace-tokenized strings."""
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    return float(BLEU(tokenize="none").corpus_score(hyps, [refs]).score)


def corpus_rouge(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (rouge-score, 0–100) over sentence pairs."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=WhitespaceTokenizer())
    totals: Counter[str] = Counter()
    for h, r in zip(hyps, refs):
        for key, score in scorer.score(r, h).items():
            totals[key] += score.fmeasure
    n = max(len(hyps), 1)
    return {key: 100.0 * totals[key] / n for key in ("rouge1", "rouge2", "rougeL")}


def _words(sample: str | list[str]) -> list[str]:
    return sample.split() if isinstance(sample, str) else list(sample)


def distinct_n(samples: list[str] | list[list[str]], n: int) -> float:
    """Distinct-n (Li et al., 2016, as [GDC++] Sec. 4.2 uses it: repetition within a sample): the mean over
    samples of |distinct n-grams of x| / |n-grams of x|; samples shorter than n are skipped (NaN if all are)."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    if not samples:
        raise ValueError("distinct_n of no samples")
    ratios = []
    for sample in samples:
        words = _words(sample)
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if grams:
            ratios.append(len(set(grams)) / len(grams))
    return sum(ratios) / len(ratios) if ratios else float("nan")


def self_bleu(samples: list[str] | list[list[str]], n: int = 5, smooth: str = "floor") -> float:
    """Self-BLEU-n (Zhu et al., 2018, Texygen; [GDC++] Sec. 4.2): the mean over samples of the sentence BLEU
    (sacrebleu, 0–100, n-grams up to n) of each sample against all the others as references; 100 when every
    sample repeats another, 0 when no two share a word. ``smooth="floor"`` (0.1 for a zero count) is
    Texygen's NLTK smoothing method 1; ``"none"`` leaves a missing n-gram order at 0."""
    from sacrebleu.metrics import BLEU

    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    texts = [" ".join(_words(s)) for s in samples]
    if len(texts) < 2:
        raise ValueError(f"self_bleu needs at least 2 samples, got {len(texts)}")
    bleu = BLEU(max_ngram_order=n, smooth_method=smooth, smooth_value=0.1 if smooth == "floor" else None,
                effective_order=True, tokenize="none")
    scores = [bleu.sentence_score(h, texts[:i] + texts[i + 1:]).score for i, h in enumerate(texts)]
    return float(sum(scores) / len(scores))


# --- sentence BLEU on token lists, exactly sacrebleu's (exp smoothing, effective order) ---------------------------
_MAX_ORDER = 4
_LOG_ZERO = -9999999999.0  # sacrebleu.utils.my_log(0)


def bleu_from_stats(correct: list[int], total: list[int], sys_len: int, ref_len: int) -> float:
    """Sentence BLEU (0–100) from its sufficient statistics, the same floating-point operations in the same order
    as sacrebleu 2's ``BLEU.compute_bleu`` with ``smooth_method="exp"`` and ``effective_order=True``."""
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    if not any(correct):
        return 0.0
    precisions = [0.0] * _MAX_ORDER
    smooth_mteval = 1.0
    eff_order = _MAX_ORDER
    for n in range(1, _MAX_ORDER + 1):
        if total[n - 1] == 0:
            break
        eff_order = n
        if correct[n - 1] == 0:
            smooth_mteval *= 2
            precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1])
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]
    return bp * math.exp(sum([math.log(p) if p != 0.0 else _LOG_ZERO for p in precisions[:eff_order]]) / eff_order)


def ngram_counts(tokens: Sequence[Hashable]) -> Counter:
    """Counts of every n-gram (1 ≤ n ≤ 4) of ``tokens``, as tuples."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, _MAX_ORDER + 1) for i in range(len(tokens) - n + 1))


class SentenceBleu:
    """Sentence BLEU of token lists against one reference, equal to sacrebleu's ``BLEU(effective_order=True,
    smooth_method="exp", tokenize="none").sentence_score`` on the space-joined tokens (tested), without the string
    round trip, and incrementally: :meth:`prefixes` scores every prefix of a hypothesis in one pass and
    :meth:`extensions` every one-token extension of a prefix, the two quantities the token-level rewards ΔR need.
    An empty hypothesis scores 0 (as seqrl's BLEU reward)."""

    def __init__(self, reference: Sequence[Hashable]) -> None:
        self.ref = list(reference)
        self.ref_len = len(self.ref)
        self.ref_counts = ngram_counts(self.ref)

    def score(self, hyp: Sequence[Hashable]) -> float:
        return self.prefixes(hyp)[-1]

    def _step(self, hyp: list, counts: Counter, correct: list[int], token: Hashable) -> None:
        """Append ``token`` to ``hyp``, updating its n-gram ``counts`` and clipped matches ``correct`` in place."""
        hyp.append(token)
        k = len(hyp)
        for n in range(1, min(_MAX_ORDER, k) + 1):
            gram = tuple(hyp[k - n:])
            counts[gram] += 1
            if counts[gram] <= self.ref_counts.get(gram, 0):
                correct[n - 1] += 1

    def prefixes(self, hyp: Sequence[Hashable]) -> list[float]:
        """[BLEU(hyp[:k]) for k = 0 … len(hyp)] (k = 0: 0.0)."""
        out = [0.0]
        seen: list = []
        counts: Counter = Counter()
        correct = [0] * _MAX_ORDER
        for token in hyp:
            self._step(seen, counts, correct, token)
            k = len(seen)
            total = [max(0, k - n + 1) for n in range(1, _MAX_ORDER + 1)]
            out.append(bleu_from_stats(correct, total, k, self.ref_len))
        return out

    def extensions(self, prefix: Sequence[Hashable], candidates: Sequence[Hashable]) -> list[float]:
        """[BLEU(prefix + [w]) for w in candidates]."""
        seen: list = []
        counts: Counter = Counter()
        correct = [0] * _MAX_ORDER
        for token in prefix:
            self._step(seen, counts, correct, token)
        k = len(seen) + 1
        total = [max(0, k - n + 1) for n in range(1, _MAX_ORDER + 1)]
        out = []
        for w in candidates:
            now = list(correct)
            for n in range(1, min(_MAX_ORDER, k) + 1):
                gram = (*seen[k - n:], w)
                if counts.get(gram, 0) + 1 <= self.ref_counts.get(gram, 0):
                    now[n - 1] += 1
            out.append(bleu_from_stats(now, total, k, self.ref_len))
        return out
