"""Built-in rewards: delta, hamming, edit, bleu, rouge, motif, potential, weighted."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from ..textscore import WhitespaceTokenizer, corpus_bleu
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
    """Sentence BLEU (sacrebleu, exponential smoothing, effective order) on whitespace tokens,
    divided by 100 so that R ∈ [0, 1]."""

    name = "bleu"
    reference_symmetric = True

    def __init__(self, vocab: Vocab, smooth_method: str = "exp", scale: float = 0.01) -> None:
        super().__init__(vocab)
        from sacrebleu.metrics import BLEU

        self._bleu = BLEU(effective_order=True, smooth_method=smooth_method, tokenize="none")
        self.scale = scale
        self._cache: dict[tuple[str, str], float] = {}

    def _one(self, hyp: str, ref: str) -> float:
        key = (hyp, ref)
        if key not in self._cache:
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = self._bleu.sentence_score(hyp, [ref]).score if hyp else 0.0
        return self._cache[key]

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        pairs = zip(hyps.to_strings(self.vocab), self._reference(refs).to_strings(self.vocab))
        return torch.tensor([self._one(h, r) * self.scale for h, r in pairs], device=hyps.device)

    def corpus_score(self, hyps: SequenceBatch, refs: SequenceBatch) -> float:
        """Corpus BLEU (sacrebleu, 0–100) of the batch: the validation score of the BLEU suites."""
        return corpus_bleu(hyps.to_strings(self.vocab), refs.to_strings(self.vocab))


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
