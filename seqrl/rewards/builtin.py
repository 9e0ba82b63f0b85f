"""Built-in rewards: delta, hamming, edit, bleu, rouge, motif, potential, weighted."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from ..textscore import SentenceBleu, WhitespaceTokenizer, corpus_bleu
from ..types import SequenceBatch, Vocab
from ..utils import motif_presence
from .base import BaseReward, Reward, RewardError, compute_reward, make_reward, register_reward


def _aligned(hyps: SequenceBatch, refs: SequenceBatch, fill_h: int = -1, fill_r: int = -2) -> tuple[Tensor, Tensor]:
    """Both batches padded to one width with distinct fillers, so padding never matches."""
    W = max(hyps.tokens.shape[1], refs.tokens.shape[1])
    h = torch.nn.functional.pad(hyps.tokens, (0, W - hyps.tokens.shape[1]), value=fill_h)
    r = torch.nn.functional.pad(refs.tokens.to(hyps.device), (0, W - refs.tokens.shape[1]), value=fill_r)
    steps = torch.arange(W, device=hyps.device)[None]
    h = torch.where(steps < hyps.lengths[:, None], h, torch.full_like(h, fill_h))
    r = torch.where(steps < refs.lengths.to(hyps.device)[:, None], r, torch.full_like(r, fill_r))
    return h, r


@register_reward("delta")
class DeltaReward(BaseReward):
    """R_δ(y; y*) = 1 if y = y* else ``miss`` ([ERPO] Eq. 6, where miss = -∞).

    The default miss value is 0 so that the reward is finite (the paper's -∞ makes the
    E-step a point mass on y*; any finite miss approaches it as the temperature falls).
    """

    name = "delta"
    reference_symmetric = True

    def __init__(self, vocab: Vocab, miss: float = 0.0) -> None:
        super().__init__(vocab)
        self.miss = miss
        self.allows_neg_inf = miss == -math.inf

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        refs = self._reference(refs)
        h, r = _aligned(hyps, refs)
        equal = ((h == r) | ((h < 0) & (r < 0))).all(1)
        return torch.where(equal, torch.ones(()), torch.full((), self.miss)).to(hyps.device)


@register_reward("hamming")
class HammingReward(BaseReward):
    """R(y; y*) = −Σ_i [y_i ≠ y*_i] over max(|y|, |y*|) positions (EOS counted), as in RAML's
    hamming payoff ([VAML/ERAC] App. B.1). ``normalize`` divides by |y*|."""

    name = "hamming"
    reference_symmetric = True

    def __init__(self, vocab: Vocab, normalize: bool = False) -> None:
        super().__init__(vocab)
        self.normalize = normalize

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        refs = self._reference(refs)
        h, r = _aligned(hyps, refs)
        dist = ((h != r) & ((h >= 0) | (r >= 0))).sum(1).float()
        if self.normalize:
            dist = dist / refs.lengths.to(dist.device).float()
        return -dist


def levenshtein(hyps: SequenceBatch, refs: SequenceBatch, eos: int) -> Tensor:
    """[B] edit distance between the symbol strings (EOS and padding excluded), batched DP."""
    h, r = hyps.tokens, refs.tokens.to(hyps.device)
    hl, rl = hyps.lengths - 1, refs.lengths.to(hyps.device) - 1  # drop EOS
    B, Th, Tr = h.shape[0], h.shape[1], r.shape[1]
    dev = h.device
    # prev[b, j] = distance between h[b, :i] and r[b, :j]; rows of the DP table, vectorised over B.
    prev = torch.arange(Tr + 1, device=dev, dtype=torch.long)[None].expand(B, Tr + 1).clone()
    result = torch.where(hl == 0, rl, torch.zeros_like(rl))
    for i in range(1, Th + 1):
        cur = torch.empty_like(prev)
        cur[:, 0] = i
        sub = (h[:, i - 1 : i] != r).long()  # (B, Tr)
        for j in range(1, Tr + 1):
            cur[:, j] = torch.minimum(
                torch.minimum(prev[:, j] + 1, cur[:, j - 1] + 1), prev[:, j - 1] + sub[:, j - 1]
            )
        result = torch.where(hl == i, cur.gather(1, rl[:, None]).squeeze(1), result)
        prev = cur
    return result


@register_reward("edit")
class EditReward(BaseReward):
    """R(y; y*) = −Levenshtein(y, y*) on symbols; ``normalize`` divides by max(|y*|, 1)."""

    name = "edit"
    reference_symmetric = True

    def __init__(self, vocab: Vocab, normalize: bool = False) -> None:
        super().__init__(vocab)
        self.normalize = normalize

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        refs = self._reference(refs)
        dist = levenshtein(hyps, refs, self.vocab.eos).float()
        if self.normalize:
            dist = dist / (refs.lengths.to(dist.device) - 1).clamp(min=1).float()
        return -dist


@register_reward("bleu")
class BleuReward(BaseReward):
    """Sentence BLEU (sacrebleu's, exponential smoothing, effective order) on whitespace tokens, times ``scale``
    (0.01 by default, so that R ∈ [0, 1]); ``scale_by="reference_length"`` also multiplies it by |y*|, the
    reference's token count (EOS excluded): [VAML/ERAC] Sec. 6.1's pay-off, "scaled up by the sentence length so
    that the scale of the immediate reward at each step is invariant to the length", as the authors'
    ``get_rewards(scale_reward=True)`` does (registered as ``bleu_scaled``).

    Scores are computed on the token lists (:class:`seqrl.textscore.SentenceBleu`, equal to sacrebleu's
    ``sentence_score`` to the last bit), and the token-level forms every prefix and every one-token extension
    need (:meth:`prefix_scores`, :meth:`extension_scores`) in one incremental pass; a vocabulary with a symbol
    that whitespace would split falls back to sacrebleu on strings."""

    name = "bleu"
    reference_symmetric = True
    SCALES = ("none", "reference_length")

    def __init__(self, vocab: Vocab, smooth_method: str = "exp", scale: float = 0.01,
                 scale_by: str = "none") -> None:
        super().__init__(vocab)
        from sacrebleu.metrics import BLEU

        if scale_by not in self.SCALES:
            raise RewardError(f"unknown BLEU scale_by {scale_by!r}; expected one of {self.SCALES}")
        self._bleu = BLEU(effective_order=True, smooth_method=smooth_method, tokenize="none")
        self.scale, self.scale_by = scale, scale_by
        self._cache: dict[tuple, float] = {}
        self._exact = smooth_method == "exp" and all(s and not any(c.isspace() for c in s) for s in vocab.itos)
        self._scorers: dict[tuple, SentenceBleu] = {}

    def _one(self, hyp: str, ref: str) -> float:
        key = (hyp, ref)
        if key not in self._cache:
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = self._bleu.sentence_score(hyp, [ref]).score if hyp else 0.0
        return self._cache[key]

    def _factor(self, ref: list[str]) -> float:
        return self.scale * (len(ref) if self.scale_by == "reference_length" else 1.0)

    def _scorer(self, ref: list[str]) -> SentenceBleu:
        key = tuple(ref)
        if key not in self._scorers:
            if len(self._scorers) > 50_000:
                self._scorers.clear()
            self._scorers[key] = SentenceBleu(ref)
        return self._scorers[key]

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        refs = self._reference(refs)
        if not self._exact:
            pairs = zip(hyps.to_strings(self.vocab), refs.to_strings(self.vocab))
            return torch.tensor([self._one(h, r) * self._factor(r.split()) for h, r in pairs], device=hyps.device)
        out = []
        for h, r in zip(self._tokens(hyps), self._tokens(refs)):
            key = (tuple(h), tuple(r))
            if key not in self._cache:
                if len(self._cache) > 200_000:
                    self._cache.clear()
                self._cache[key] = self._scorer(r).score(h) if h else 0.0
            out.append(self._cache[key] * self._factor(r))
        return torch.tensor(out, device=hyps.device)

    def _tokens(self, batch: SequenceBatch) -> list[list[str]]:
        return [self.vocab.decode(row) for row in batch.to_lists()]

    def prefix_scores(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor | None:
        """[B, T] R(y_≤t + eos) for every position t of every row (the whole row beyond its length), as
        :func:`~seqrl.rewards.base.token_rewards` reads them; None where only sacrebleu on strings is exact."""
        if not self._exact:
            return None
        refs = self._reference(refs)
        B, T = hyps.tokens.shape
        out = torch.zeros(B, T, dtype=torch.float64)
        strip = {self.vocab.pad, self.vocab.bos}
        for b, (row, ref) in enumerate(zip(hyps.tokens.tolist(), self._tokens(refs))):
            n = int(hyps.lengths[b])
            words, at = [], []  # at[k]: decoded tokens among the first k + 1 ids
            for i in row[:n]:
                if i == self.vocab.eos:
                    break
                if i not in strip:
                    words.append(self.vocab.itos[i])
                at.append(len(words))
            scores = self._scorer(ref).prefixes(words)
            factor = self._factor(ref)
            values = [scores[at[min(k, len(at) - 1)]] * factor if at else 0.0 for k in range(T)]
            out[b] = torch.tensor(values, dtype=torch.float64)
        return out.to(hyps.device)

    def extension_scores(self, prefix: Tensor, refs: SequenceBatch | None, candidates: Tensor) -> Tensor | None:
        """[B, C] R(prefix + w + eos) for every candidate id w of each row (R(prefix + eos) for w = EOS); ``prefix``
        [B, t] symbols without EOS; None where only sacrebleu on strings is exact."""
        if not self._exact:
            return None
        refs = self._reference(refs)
        eos, strip = self.vocab.eos, {self.vocab.pad, self.vocab.bos}
        out = []
        for ids, cands, ref in zip(prefix.tolist(), candidates.tolist(), self._tokens(refs)):
            closed = eos in ids  # a finished prefix: every extension is the prefix itself
            words = [self.vocab.itos[i] for i in (ids[:ids.index(eos)] if closed else ids) if i not in strip]
            scorer, factor = self._scorer(ref), self._factor(ref)
            base = scorer.prefixes(words)[-1] if words else 0.0
            ext = scorer.extensions(words, [self.vocab.itos[w] for w in cands])
            out.append([(base if closed or w == eos or w in strip else v) * factor for w, v in zip(cands, ext)])
        return torch.tensor(out, dtype=torch.float64, device=prefix.device)

    def corpus_score(self, hyps: SequenceBatch, refs: SequenceBatch) -> float:
        """Corpus BLEU (sacrebleu, 0–100) of the batch: the validation score of the BLEU suites."""
        return corpus_bleu(hyps.to_strings(self.vocab), refs.to_strings(self.vocab))


@register_reward("bleu_scaled")
class ScaledBleuReward(BleuReward):
    """Sentence BLEU in [0, 1] times the reference's length |y*| (tokens, EOS excluded): [VAML/ERAC] Sec. 6.1's
    pay-off for every algorithm of its experiments, the authors' ``get_rewards(scale_reward=True)``
    (``shared/utils.py`` of zihangdai/ERAC-VAML), so that a correct token is worth about 1 whatever the length and
    Tables 5–6's temperatures (τ = 0.4, 0.05) weigh entropy against it as the paper did. ``corpus_score`` (the
    validation measure) is plain corpus BLEU."""

    name = "bleu_scaled"

    def __init__(self, vocab: Vocab, smooth_method: str = "exp", scale: float = 0.01,
                 scale_by: str = "reference_length") -> None:
        super().__init__(vocab, smooth_method=smooth_method, scale=scale, scale_by=scale_by)


@register_reward("rouge")
class RougeReward(BaseReward):
    """ROUGE F1 (rouge-score): ``variant`` is rouge1, rouge2, rougeL, or sum (R-1 + R-2 + R-L)."""

    name = "rouge"
    reference_symmetric = True
    VARIANTS = ("rouge1", "rouge2", "rougeL", "sum")

    def __init__(self, vocab: Vocab, variant: str = "sum") -> None:
        super().__init__(vocab)
        if variant not in self.VARIANTS:
            raise RewardError(f"unknown ROUGE variant {variant!r}; expected one of {self.VARIANTS}")
        from rouge_score.rouge_scorer import RougeScorer

        self.variant = variant
        self._types = ["rouge1", "rouge2", "rougeL"] if variant == "sum" else [variant]
        self._scorer = RougeScorer(self._types, tokenizer=WhitespaceTokenizer())

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        values = []
        for h, r in zip(hyps.to_strings(self.vocab), self._reference(refs).to_strings(self.vocab)):
            scores = self._scorer.score(r, h)  # rouge-score takes (target, prediction)
            values.append(sum(scores[t].fmeasure for t in self._types))
        return torch.tensor(values, device=hyps.device)


@register_reward("motif")
class MotifReward(BaseReward):
    """R(x) = 1 if the motif occurs in x, else 0 (the GAM task's pointwise constraint)."""

    name = "motif"
    needs_reference = False

    def __init__(self, vocab: Vocab, motif: str = "1000101000101") -> None:
        super().__init__(vocab)
        if not motif:
            raise RewardError("motif must be a non-empty string of vocabulary symbols")
        self.motif = motif
        self._ids = torch.tensor(vocab.encode(list(motif), add_eos=False))

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        return motif_presence(hyps, self._ids).float()


@register_reward("potential")
class PotentialReward(BaseReward):
    """R(x) = scale · log P(x) of an EBM's potential; ``floor`` replaces -inf (P = 0)."""

    name = "potential"
    needs_reference = False

    def __init__(self, vocab: Vocab, potential=None, scale: float = 1.0, floor: float | None = None) -> None:
        super().__init__(vocab)
        if potential is None or not hasattr(potential, "log_potential"):
            raise RewardError("the 'potential' reward needs potential=<object with log_potential(batch)>")
        self.potential, self.scale, self.floor = potential, scale, floor

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        from ..ebm.base import checked_log_potential  # here: seqrl.ebm imports the policies, which import rewards

        # P = 0 on a whole batch is a legitimate reward (-inf, or the floor), so support is not required.
        values = checked_log_potential(self.potential, hyps, require_support=False)
        if self.floor is not None:
            values = values.clamp(min=self.floor)
        return self.scale * values


@register_reward("weighted")
class WeightedReward(BaseReward):
    """R = Σ_i w_i R_i for rewards given by name (``terms={"bleu": 1.0, "rouge": 0.5}``) or objects."""

    name = "weighted"

    def __init__(self, vocab: Vocab, terms: Mapping[str, float] | list[tuple[float, Reward]] | None = None) -> None:
        super().__init__(vocab)
        if not terms:
            raise RewardError("the 'weighted' reward needs terms, e.g. {'bleu': 1.0, 'rouge': 0.5}")
        if isinstance(terms, Mapping):
            self.terms = [(float(w), make_reward(n, vocab)) for n, w in terms.items()]
        else:
            self.terms = [(float(w), r) for w, r in terms]
        self.needs_reference = any(getattr(r, "needs_reference", True) for _, r in self.terms)
        self.terminal_only = any(getattr(r, "terminal_only", False) for _, r in self.terms)

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        total = torch.zeros(hyps.batch_size, device=hyps.device)
        for weight, reward in self.terms:
            total = total + weight * compute_reward(reward, hyps, refs)
        return total
