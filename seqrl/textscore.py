"""Text scores on whitespace-tokenized strings (sacrebleu, rouge-score): what the BLEU/ROUGE rewards, the
evaluations and the benchmark tables share. Plain strings in, numbers out: no seqrl type is needed here."""

from __future__ import annotations

from collections import Counter


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
