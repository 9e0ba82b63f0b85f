"""Evaluation metrics: cross-entropy, motif frequency, corpus BLEU/ROUGE, diversity (Distinct-n, Self-BLEU)."""

from __future__ import annotations

from collections import Counter

import torch

from .rewards.builtin import motif_presence
from .types import BatchError, SequenceBatch, Vocab


@torch.no_grad()
def sequence_log_probs(policy, data: SequenceBatch, batch_size: int = 1000) -> torch.Tensor:
    """[N] log π(y | x) of every row, in eval mode and chunks (CPU float64 result)."""
    if data.batch_size == 0:
        raise BatchError("empty data: cannot evaluate a policy on no sequences")
    was_training = policy.training
    policy.eval()
    try:
        out = []
        for start in range(0, data.batch_size, batch_size):
            idx = torch.arange(start, min(start + batch_size, data.batch_size))
            chunk = data.index(idx).to(policy.device)
            out.append(policy.sequence_log_prob(chunk).double().cpu())
        return torch.cat(out)
    finally:
        policy.train(was_training)


def cross_entropy(policy, data: SequenceBatch, batch_size: int = 1000) -> float:
    """CE(T, π) = −(1/|T|) Σ_{y∈T} log π(y | x), nats per sequence (EOS included)."""
    return float(-sequence_log_probs(policy, data, batch_size).mean())


@torch.no_grad()
def exposure_bias(policy, data: SequenceBatch, *, generator: torch.Generator | None = None,
                  batch_size: int = 1000) -> dict[str, float]:
    """How much one wrong token in the prefix derails next-token prediction.

    Per row, the token at a position s drawn uniformly from the non-EOS positions is replaced by
    another generatable symbol, drawn uniformly; every later reference token y_t (t > s, EOS
    included) is then predicted under teacher forcing, once after the reference prefix and once
    after the corrupted one. MLE only ever conditions on reference prefixes, so at test time its
    own mistakes put it off its training distribution: exposure bias ([ERPO] Sec. 1; Ranzato et
    al. 2016). Returns the accuracy and the mean −log π(y_t | ·) of the tokens after s under
    both prefixes, and ``accuracy_drop`` = clean − corrupted accuracy. Rows of one token (only
    EOS) have no position to corrupt and are skipped.
    """
    if data.batch_size == 0:
        raise BatchError("empty data: cannot evaluate a policy on no sequences")
    rows = torch.nonzero(data.lengths >= 2).flatten()
    if rows.numel() == 0:
        raise BatchError("every sequence has a single token: no prefix to corrupt")
    data = data.index(rows)
    vocab_ids = torch.tensor(policy.vocab.symbol_ids)  # sorted, EOS excluded
    if vocab_ids.numel() < 2:
        raise ValueError("exposure_bias needs at least two non-EOS symbols to substitute")
    B, T = data.tokens.shape
    position = (torch.rand(B, generator=generator) * (data.lengths - 1).float()).long()  # s ∈ [0, len − 2]
    offset = torch.randint(1, vocab_ids.numel(), (B,), generator=generator)
    rank = torch.searchsorted(vocab_ids, data.tokens[torch.arange(B), position].cpu())
    corrupted_tokens = data.tokens.clone()
    corrupted_tokens[torch.arange(B), position] = vocab_ids[(rank + offset) % vocab_ids.numel()].to(data.device)
    t = torch.arange(T)[None]
    after = (t > position[:, None]) & (t < data.lengths[:, None])
    was_training = policy.training
    policy.eval()
    totals = {"clean": [0.0, 0.0], "corrupted": [0.0, 0.0]}
    try:
        for start in range(0, B, batch_size):
            idx = torch.arange(start, min(start + batch_size, B))
            clean = data.index(idx).to(policy.device)
            inputs = {"clean": clean, "corrupted": SequenceBatch(corrupted_tokens[idx].to(policy.device),
                                                                 clean.lengths, clean.context)}
            mask = after[idx].to(policy.device)
            for name, batch in inputs.items():
                log_dists = policy.log_dists(batch)
                logp = log_dists.gather(2, clean.tokens.unsqueeze(2)).squeeze(2)
                correct = log_dists.argmax(-1) == clean.tokens
                totals[name][0] += float(correct[mask].sum())
                totals[name][1] += float(-logp[mask].sum())
    finally:
        policy.train(was_training)
    count = float(after.sum())
    out = {f"{name}_accuracy": v[0] / count for name, v in totals.items()}
    out.update({f"{name}_nll": v[1] / count for name, v in totals.items()})
    out["accuracy_drop"] = out["clean_accuracy"] - out["corrupted_accuracy"]
    return out


@torch.no_grad()
def motif_frequency(samples: SequenceBatch, vocab: Vocab, motif: str) -> float:
    """Fraction of sequences that contain the motif."""
    ids = torch.tensor(vocab.encode(list(motif), add_eos=False), device=samples.device)
    return float(motif_presence(samples, ids).float().mean())


@torch.no_grad()
def sample_in_chunks(policy, num: int, chunk: int = 10_000, generator: torch.Generator | None = None) -> SequenceBatch:
    """``num`` unconditional samples, drawn ``chunk`` at a time, concatenated on the CPU."""
    from .types import concat_batches

    was_training = policy.training
    policy.eval()
    try:
        parts = []
        left = num
        while left > 0:
            n = min(chunk, left)
            parts.append(policy.sample(n, generator=generator).batch.to("cpu"))
            left -= n
        return concat_batches(parts, pad=policy.vocab.pad)
    finally:
        policy.train(was_training)


def corpus_bleu(hyps: list[str], refs: list[str]) -> float:
    """Corpus BLEU (sacrebleu, 0–100) on whitespace-tokenized strings."""
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    return float(BLEU(tokenize="none").corpus_score(hyps, [refs]).score)


def corpus_rouge(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (rouge-score, 0–100) over sentence pairs."""
    from rouge_score.rouge_scorer import RougeScorer

    from .rewards.builtin import _WhitespaceTokenizer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_WhitespaceTokenizer())
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
