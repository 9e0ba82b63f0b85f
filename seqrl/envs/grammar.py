"""A generated English-like corpus for the control suite ([GDC++] Sec. 4.2 tasks, no downloads).

A probabilistic grammar over a vocabulary of about 300 words: five topic word lists (science,
art, sports, business, politics: nouns, verbs, adjectives), female and male mentions (pronouns
and nouns), neutral subjects, general adjectives and function words, combined by sentence
templates. Sentences are short (at most ``MAX_LEN`` tokens, EOS included) so that an LSTM
language model a(x) trains on it in seconds on a CPU, and every task of [GDC++] Sec. 4.2 has
a feature with support under a(x): a single word ("amazing", a few % of sentences), a word list
(politics), female mentions (about 1 in 5 sentences) and the four topics.

The grammar is fixed; a corpus is a deterministic function of its seed (numpy's PCG64).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..types import SequenceBatch, Vocab

MAX_LEN = 20
"""Longest sentence, EOS included."""

TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "science": {
        "nouns": ("experiment", "theory", "telescope", "molecule", "laboratory", "physics", "chemistry", "biology",
                  "microscope", "hypothesis", "genome", "planet", "electron", "vaccine", "equation", "climate",
                  "fossil", "neuron", "galaxy", "data"),
        "verbs": ("measured", "discovered", "tested", "observed", "analyzed"),
        "adjectives": ("scientific", "chemical", "quantum", "genetic", "experimental"),
    },
    "art": {
        "nouns": ("painting", "sculpture", "museum", "gallery", "poem", "novel", "canvas", "portrait", "melody",
                  "symphony", "theater", "opera", "sketch", "mural", "exhibition", "film", "dance", "poetry",
                  "artist", "studio"),
        "verbs": ("painted", "sculpted", "composed", "exhibited", "sketched"),
        "adjectives": ("artistic", "abstract", "colorful", "classical", "poetic"),
    },
    "sports": {
        "nouns": ("football", "match", "tournament", "stadium", "goal", "league", "coach", "athlete", "marathon",
                  "tennis", "basketball", "championship", "medal", "referee", "season", "race", "trophy", "olympics",
                  "team", "score"),
        "verbs": ("won", "scored", "trained", "defeated", "played"),
        "adjectives": ("athletic", "competitive", "olympic", "undefeated", "sporting"),
    },
    "business": {
        "nouns": ("company", "market", "profit", "investor", "startup", "revenue", "bank", "stock", "merger",
                  "contract", "budget", "customer", "factory", "brand", "shares", "economy", "trade", "salary",
                  "industry", "firm"),
        "verbs": ("invested", "sold", "bought", "hired", "financed"),
        "adjectives": ("financial", "commercial", "corporate", "profitable", "economic"),
    },
    "politics": {
        "nouns": ("election", "government", "parliament", "senator", "vote", "policy", "president", "campaign",
                  "minister", "law", "democracy", "party", "congress", "reform", "diplomat", "treaty", "citizen",
                  "constitution", "mayor", "debate"),
        "verbs": ("elected", "voted", "legislated", "campaigned", "negotiated"),
        "adjectives": ("political", "democratic", "legislative", "electoral", "diplomatic"),
    },
}
"""Per topic: nouns, verbs and adjectives that mark a sentence as being about it."""

FEMALE_PRONOUNS = ("she", "her", "herself")
MALE_PRONOUNS = ("he", "him", "his", "himself")
FEMALE_NOUNS = ("woman", "girl", "mother", "daughter", "sister", "queen", "wife", "actress", "lady", "grandmother",
                "aunt", "niece")
MALE_NOUNS = ("man", "boy", "father", "son", "brother", "king", "husband", "actor", "gentleman", "grandfather",
              "uncle", "nephew")
FEMALE_WORDS = FEMALE_PRONOUNS + FEMALE_NOUNS
MALE_WORDS = MALE_PRONOUNS + MALE_NOUNS
NEUTRAL_SUBJECTS = ("they", "we", "people", "everyone", "somebody", "nobody", "you", "i")
NEUTRAL_NOUNS = ("person", "student", "teacher", "doctor", "neighbor", "friend", "child", "group", "family",
                 "crowd", "writer", "reporter", "engineer", "lawyer", "nurse", "farmer", "visitor", "expert",
                 "committee", "community")
GENERAL_VERBS = ("saw", "liked", "visited", "described", "discussed", "remembered", "found", "praised",
                 "criticized", "studied", "loved", "ignored", "explained", "questioned", "watched", "supported",
                 "changed", "made", "followed", "helped")
GENERAL_ADJECTIVES = ("amazing", "new", "old", "big", "small", "important", "strange", "famous", "local", "recent",
                      "modern", "popular", "difficult", "simple", "beautiful", "terrible", "quiet", "young", "long",
                      "great")
"""Ranked by frequency (Zipf): "amazing", first, is in about 12% of sentences, so that even a batch of 64
samples of a almost surely holds one (DPG has no learning signal from a first batch where P = 0 everywhere)."""
ADVERBS = ("today", "yesterday", "again", "recently", "quickly", "slowly", "finally", "often")
DETERMINERS = ("the", "a", "this", "that", "every", "another")
PREPOSITIONS = ("in", "at", "about", "with", "near", "after", "before", "for", "from", "during")
CONJUNCTIONS = ("and", "but", "because", "while")
EXTRA_FUNCTION = ("of", "very", "not")

TOPIC_PRIOR = {"science": 0.38, "art": 0.1, "sports": 0.26, "business": 0.1, "politics": 0.16}
"""Probability of each topic for a clause: skewed, so that four topics at 25% each is a target away from a."""


def _dedupe(words: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(words))


def grammar_words() -> list[str]:
    """The vocabulary's symbols, in a fixed order (about 300 words)."""
    words: list[str] = []
    for topic in TOPICS.values():
        for kind in ("nouns", "verbs", "adjectives"):
            words += topic[kind]
    words += FEMALE_WORDS + MALE_WORDS + NEUTRAL_SUBJECTS + NEUTRAL_NOUNS + GENERAL_VERBS + GENERAL_ADJECTIVES
    words += ADVERBS + DETERMINERS + PREPOSITIONS + CONJUNCTIONS + EXTRA_FUNCTION
    out = _dedupe(words)
    if len(out) != len(words):
        raise AssertionError("a word appears in two lists of the grammar")
    return out


def grammar_fingerprint() -> str:
    """sha256 of the grammar's words, lists and default probabilities: a model trained on its corpus is
    stale when this changes."""
    import hashlib
    import json
    from dataclasses import asdict

    parts = {"topics": TOPICS, "prior": TOPIC_PRIOR, "words": grammar_words(), "config": asdict(GrammarConfig()),
             "lists": [FEMALE_WORDS, MALE_WORDS, NEUTRAL_SUBJECTS, NEUTRAL_NOUNS, GENERAL_VERBS, GENERAL_ADJECTIVES,
                       ADVERBS, DETERMINERS, PREPOSITIONS, CONJUNCTIONS], "max_len": MAX_LEN}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def topic_words(topic: str) -> tuple[str, ...]:
    """Every word that marks ``topic`` (its nouns, verbs and adjectives)."""
    if topic not in TOPICS:
        raise KeyError(f"unknown topic {topic!r}; known: {sorted(TOPICS)}")
    lists = TOPICS[topic]
    return lists["nouns"] + lists["verbs"] + lists["adjectives"]


def _zipf(n: int, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


@dataclass(frozen=True, kw_only=True)
class GrammarConfig:
    """Probabilities of the grammar's choices (each a fraction of clauses or noun phrases)."""

    female_subject: float = 0.16
    """A clause's subject is a female mention (pronoun or noun)."""
    male_subject: float = 0.3
    """A clause's subject is a male mention (else neutral)."""
    pronoun_subject: float = 0.4
    """A gendered or neutral subject is a pronoun rather than a noun phrase."""
    adjective: float = 0.35
    """A noun phrase gets an adjective (general or of its topic, half each)."""
    prepositional_phrase: float = 0.45
    second_clause: float = 0.3
    """A conjunction and a second clause (with its own topic and subject) follow."""
    adverb: float = 0.2
    zipf_exponent: float = 0.8
    """Word frequencies within each list follow Zipf's law with this exponent."""


class Grammar:
    """The probabilistic grammar: ``sample(n, seed)`` draws n sentences as lists of words.

    A clause is ``SUBJECT VERB OBJECT [PP] [ADVERB]``; a sentence is one clause or two joined
    by a conjunction; the object and the prepositional phrase's noun come from the clause's topic.
    """

    def __init__(self, config: GrammarConfig | None = None) -> None:
        self.config = config or GrammarConfig()
        c = self.config
        for name in ("female_subject", "male_subject", "pronoun_subject", "adjective", "prepositional_phrase",
                     "second_clause", "adverb"):
            value = getattr(c, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"GrammarConfig.{name} must be a probability in [0, 1], got {value}")
        if c.female_subject + c.male_subject > 1.0:
            raise ValueError("GrammarConfig.female_subject + male_subject must be ≤ 1")
        self.vocab = Vocab(grammar_words())
        self.max_len = MAX_LEN
        self._cdf: dict[int, np.ndarray] = {}
        self._topic_cdf = np.cumsum(list(TOPIC_PRIOR.values()))

    def _pick(self, rng: np.random.Generator, words: Sequence[str]) -> str:
        cdf = self._cdf.get(len(words))
        if cdf is None:
            cdf = self._cdf[len(words)] = np.cumsum(_zipf(len(words), self.config.zipf_exponent))
        return words[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(words) - 1)]

    def _noun_phrase(self, rng: np.random.Generator, nouns: Sequence[str], topic: str | None) -> list[str]:
        c = self.config
        phrase = [self._pick(rng, DETERMINERS)]
        if rng.random() < c.adjective:
            general = topic is None or rng.random() < 0.5
            phrase.append(self._pick(rng, GENERAL_ADJECTIVES if general else TOPICS[str(topic)]["adjectives"]))
        phrase.append(self._pick(rng, nouns))
        return phrase

    def _subject(self, rng: np.random.Generator) -> list[str]:
        c = self.config
        u = rng.random()
        pronoun = rng.random() < c.pronoun_subject
        if u < c.female_subject:
            return ["she"] if pronoun else self._noun_phrase(rng, FEMALE_NOUNS, None)
        if u < c.female_subject + c.male_subject:
            return ["he"] if pronoun else self._noun_phrase(rng, MALE_NOUNS, None)
        return [self._pick(rng, NEUTRAL_SUBJECTS)] if pronoun else self._noun_phrase(rng, NEUTRAL_NOUNS, None)

    def _clause(self, rng: np.random.Generator) -> list[str]:
        c = self.config
        names = list(TOPIC_PRIOR)
        topic = names[min(int(np.searchsorted(self._topic_cdf, rng.random(), side="right")), len(names) - 1)]
        lists = TOPICS[topic]
        words = self._subject(rng)
        words.append(self._pick(rng, lists["verbs"] if rng.random() < 0.5 else GENERAL_VERBS))
        words += self._noun_phrase(rng, lists["nouns"], topic)
        if rng.random() < c.prepositional_phrase:
            words.append(self._pick(rng, PREPOSITIONS))
            words += self._noun_phrase(rng, lists["nouns"] if rng.random() < 0.7 else NEUTRAL_NOUNS, topic)
        if rng.random() < c.adverb:
            words.append(self._pick(rng, ADVERBS))
        return words

    def sentence(self, rng: np.random.Generator) -> list[str]:
        """One sentence of at most ``max_len − 1`` words (a second clause that would not fit is dropped)."""
        words = self._clause(rng)
        if rng.random() < self.config.second_clause:
            more = [self._pick(rng, CONJUNCTIONS), *self._clause(rng)]
            if len(words) + len(more) <= self.max_len - 1:
                words += more
        return words[: self.max_len - 1]

    def sample(self, num: int, seed: int) -> list[list[str]]:
        """``num`` sentences, a deterministic function of ``seed``."""
        if num < 1:
            raise ValueError(f"num must be ≥ 1, got {num}")
        rng = np.random.default_rng(seed)
        return [self.sentence(rng) for _ in range(num)]

    def batch(self, num: int, seed: int) -> SequenceBatch:
        """``num`` sentences as a padded batch over :attr:`vocab` (EOS appended)."""
        return SequenceBatch.from_lists([self.vocab.encode(s) for s in self.sample(num, seed)], pad=self.vocab.pad)


def contains_any(batch: SequenceBatch, ids: torch.Tensor) -> torch.Tensor:
    """[B] bool: row b holds at least one token of ``ids`` (PAD and EOS never match a word id)."""
    return count_of(batch, ids) > 0


def count_of(batch: SequenceBatch, ids: torch.Tensor) -> torch.Tensor:
    """[B] long: occurrences in row b of any token of ``ids`` (positions past the row's length ignored)."""
    tokens = batch.tokens
    T = tokens.shape[1]
    valid_t = torch.arange(T, device=tokens.device)[None] < batch.lengths.to(tokens.device)[:, None]  # [B, T]
    hit_t = torch.isin(tokens, ids.to(tokens.device)) & valid_t
    return hit_t.sum(1)


__all__ = [
    "FEMALE_WORDS", "MALE_WORDS", "MAX_LEN", "TOPICS", "TOPIC_PRIOR", "Grammar", "GrammarConfig", "contains_any",
    "count_of", "grammar_fingerprint", "grammar_words", "topic_words",
]
