"""A local Hugging Face sequence classifier as a reward, a constraint feature or a potential (extra ``seqrl[hf]``).

``classifier(path, label)`` reads ``AutoModelForSequenceClassification`` and its tokenizer from the local
directory ``path`` (nothing is ever downloaded) and scores each decoded sequence with the classifier's
probability of ``label``: p(label | text) ∈ [0, 1] as a reward (``log=True``: log p) and as a GDC++ feature φ(x)
(``Constraint(name, feature=clf, moment=…)``), log p(label | text) as a potential (``log_potential``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..types import SequenceBatch, Vocab
from .base import RewardError


def _directory(path: str | Path) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise RewardError(f"classifier: {str(path)!r} is not a local directory: seqrl never downloads a model; "
                          "download it yourself (e.g. `hf download NAME --local-dir DIR`) and pass DIR")
    return directory


def _label_index(label: str | int, config: Any) -> int:
    """``label`` (a name of ``config.label2id`` or an index) as an index of the classifier's outputs."""
    count = int(getattr(config, "num_labels", 0) or len(getattr(config, "id2label", {}) or {}))
    names = {str(v): int(k) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if isinstance(label, str) and label in names:
        return names[label]
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < max(count, 1):
        return label
    raise RewardError(f"classifier: no label {label!r}; its labels are {sorted(names, key=lambda n: names[n])} (or an "
                      f"index in [0, {max(count, 1)}))")


class ClassifierReward:
    """p(label | text) of a local sequence classifier for each sequence of a batch (see :func:`classifier`).

    Also a potential (``log_potential``: log p(label | text), whatever ``log`` is) and, called on a batch, a
    feature φ(x) ∈ [0, 1] for :class:`~seqrl.ebm.constraints.Constraint` (with ``log=False``).
    """

    name = "classifier"
    needs_reference = False
    terminal_only = True
    reference_symmetric = False
    allows_neg_inf = False

    def __init__(self, path: str | Path, label: str | int, *, vocab: Vocab | None = None, log: bool = False,
                 with_prompt: bool = True, batch_size: int = 64, device: str | torch.device = "cpu") -> None:
        self.vocab: Vocab | None = vocab  # may be set later, before use: the texts are decoded with it
        try:
            import transformers
        except ImportError as err:
            raise RewardError(f"classifier rewards need transformers: pip install seqrl[hf] ({err})") from None
        directory = _directory(path)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True)
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.label = _label_index(label, self.model.config)
        self.log, self.with_prompt, self.batch_size = bool(log), bool(with_prompt), int(batch_size)
        if self.batch_size < 1:
            raise RewardError(f"classifier: batch_size must be ≥ 1, got {batch_size}")

    def texts(self, batch: SequenceBatch) -> list[str]:
        """The texts the classifier reads: each completion (EOS and padding dropped) with its prompt before it
        when ``with_prompt`` and the batch has one (decoded as one token sequence, so the prompt and the
        completion join as the tokenizer writes them)."""
        vocab = self.vocab
        if vocab is None:
            raise RewardError("classifier: it needs the policy's vocabulary to decode the sequences (vocab=)")
        if not self.with_prompt or batch.context is None:
            return vocab.decode(batch)
        completions = [row[: row.index(vocab.eos)] if vocab.eos in row else row for row in batch.to_lists()]
        return vocab.decode([p + c for p, c in zip(batch.context.to_lists(), completions)], strip=False)

    @torch.no_grad()
    def label_log_probs(self, texts: list[str]) -> Tensor:
        """[len(texts)] log p(label | text), computed on the classifier's device, ``batch_size`` texts at a time
        (one at a time for a tokenizer without a pad token)."""
        step = self.batch_size if self.tokenizer.pad_token is not None else 1
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), step):
            chunk = texts[start: start + step]
            encoded = self.tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(device)
            logits = self.model(**encoded).logits.float()
            if logits.shape[-1] == 1:  # one output: a sigmoid score of the label
                out.append(torch.nn.functional.logsigmoid(logits[:, 0]))
            else:
                out.append(logits.log_softmax(-1)[:, self.label])
        return torch.cat(out) if out else torch.zeros(0)

    def log_potential(self, batch: SequenceBatch) -> Tensor:
        """log P(x) = log p(label | x): a potential (the classifier as an EBM's pointwise factor)."""
        return self.label_log_probs(self.texts(batch)).to(batch.device)

    def __call__(self, hyps: SequenceBatch, refs: SequenceBatch | None = None) -> Tensor:
        """[B] p(label | text) (log p with ``log=True``): the reward, and the feature φ(x)."""
        log_p = self.log_potential(hyps)
        return log_p if self.log else log_p.exp()

    def __repr__(self) -> str:
        return f"ClassifierReward({type(self.model).__name__}, label={self.label}, log={self.log})"


def classifier(path: str | Path, label: str | int, *, log: bool = False, vocab: Vocab | None = None,
               with_prompt: bool = True, batch_size: int = 64, device: str | torch.device = "cpu") -> ClassifierReward:
    """A reward (and feature, and potential) from the local sequence-classification model and tokenizer in the
    directory ``path``: the probability of ``label`` (a name of the model's ``id2label``, or an index) for each
    decoded completion — its log-probability with ``log=True``; ``log_potential`` always gives the log.

    ``vocab``: the policy's vocabulary, which decodes the sequences (a tokenizer's: their text; a plain one:
    symbols joined by spaces); it may also be set later (``reward.vocab = policy.vocab``), and
    ``make_reward("seqrl.rewards:classifier", vocab, path=…, label=…)`` passes it. ``with_prompt`` (default
    True): the classifier reads prompt + completion, as sentiment and toxicity classifiers are used on a
    continued text (TRL's sentiment example scores query + response); False: the completion alone.
    ``batch_size`` texts go through the classifier at a time, on ``device``."""
    return ClassifierReward(path, label, vocab=vocab, log=log, with_prompt=with_prompt, batch_size=batch_size,
                            device=device)
