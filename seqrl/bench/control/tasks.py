"""The control suite's tasks ([GDC++] Sec. 4.2): constraints on a grammar language model's samples, their
features φ(x), and the 0/1 reward of the pointwise ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...ebm.constraints import Constraint
from ...envs.grammar import FEMALE_WORDS, MALE_WORDS, contains_any, count_of, topic_words
from ...rewards.base import BaseReward
from ...types import SequenceBatch, Vocab

TaskKind = Literal["pointwise", "distributional", "hybrid"]


@dataclass(frozen=True)
class ControlTask:
    """A named set of constraints on a(x) ([GDC++] Sec. 4.2); ``kind`` is pointwise when every μ̄ is 1."""

    name: str
    description: str
    constraints: tuple[Constraint, ...]

    @property
    def kind(self) -> TaskKind:
        pointwise = [c.pointwise for c in self.constraints]
        return "pointwise" if all(pointwise) else "distributional" if not any(pointwise) else "hybrid"


def word_feature(vocab: Vocab, words: Sequence[str]) -> Callable[[SequenceBatch], Tensor]:
    """φ(x) = 1 iff x holds at least one of ``words`` ([GDC++] Sec. 4.2 (a), (b))."""
    ids = torch.tensor(vocab.encode(list(words), add_eos=False))

    def feature(batch: SequenceBatch) -> Tensor:
        return contains_any(batch, ids).double()

    return feature


def more_female_than_male(vocab: Vocab) -> Callable[[SequenceBatch], Tensor]:
    """φ(x) = 1 iff x holds more female than male mentions ([GDC++] Sec. 4.2 (f))."""
    female = torch.tensor(vocab.encode(list(FEMALE_WORDS), add_eos=False))
    male = torch.tensor(vocab.encode(list(MALE_WORDS), add_eos=False))

    def feature(batch: SequenceBatch) -> Tensor:
        return (count_of(batch, female) > count_of(batch, male)).double()

    return feature


TASK_NAMES = ("word_amazing", "wordlist_politics", "female_50", "topics_25", "hybrid_sports_female")


def control_tasks(vocab: Vocab) -> dict[str, ControlTask]:
    """The suite's tasks over the grammar's vocabulary, by name (:data:`TASK_NAMES`)."""
    word = lambda *w: word_feature(vocab, w)  # noqa: E731
    topics = ("science", "art", "sports", "business")
    return {
        "word_amazing": ControlTask("word_amazing", "pointwise: contains 'amazing' (≈12% of a)",
                                   (Constraint("amazing", word("amazing"), 1.0),)),
        "wordlist_politics": ControlTask("wordlist_politics", "pointwise: contains a politics word (≈20% of a)",
                                         (Constraint("politics", word(*topic_words("politics")), 1.0),)),
        "female_50": ControlTask("female_50", "distributional: a female mention in 50% (≈20% of a)",
                                 (Constraint("female", word(*FEMALE_WORDS), 0.5),)),
        "topics_25": ControlTask("topics_25", "distributional: science, art, sports, business at 25% each",
                                 tuple(Constraint(t, word(*topic_words(t)), 0.25) for t in topics)),
        "hybrid_sports_female": ControlTask(
            "hybrid_sports_female", "hybrid: a sports word (μ̄ = 1), more female than male mentions (μ̄ = 0.5)",
            (Constraint("sports", word(*topic_words("sports")), 1.0),
             Constraint("female_gt_male", more_female_than_male(vocab), 0.5))),
    }


class PointwiseReward(BaseReward):
    """r(x) = Π_j 1[φ_j(x) = μ̄_j] over a task's pointwise constraints: what REINFORCE and KL-control maximize
    ([GDC++] Sec. 4.2, "R(x) = 1 if and only if the pointwise constraints are met")."""

    name = "pointwise_constraints"
    needs_reference = False
    terminal_only = True

    def __init__(self, vocab: Vocab, constraints: Sequence[Constraint]) -> None:
        super().__init__(vocab)
        self.constraints = tuple(c for c in constraints if c.pointwise)
        if not self.constraints:
            raise ValueError("PointwiseReward needs at least one pointwise constraint (μ̄ ∈ {0, 1})")

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        met = torch.ones(hyps.batch_size, dtype=torch.bool, device=hyps.device)
        for c in self.constraints:
            met = met & (c.values(hyps).to(hyps.device) == c.moment)
        return met.float()


__all__ = ["TASK_NAMES", "ControlTask", "PointwiseReward", "control_tasks", "more_female_than_male", "word_feature"]
