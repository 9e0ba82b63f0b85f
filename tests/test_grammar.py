"""The generated grammar corpus of the control suite, and the cached language model a(x) trained on it."""

import warnings

import pytest
import torch

from seqrl.bench import pretrained
from seqrl.bench.control import TASK_NAMES, control_tasks
from seqrl.bench.pretrained import LMConfig, cache_dir, cache_path, load_or_train_lm
from seqrl.envs.grammar import MAX_LEN, Grammar, GrammarConfig, contains_any, count_of, grammar_words, topic_words
from seqrl.types import SequenceBatch

TINY = LMConfig(corpus_size=200, valid_size=50, hidden_size=8, embedding_dim=4, epochs=1, batch_size=100)


def test_grammar_is_deterministic_given_a_seed():
    g = Grammar()
    assert g.sample(50, seed=3) == Grammar().sample(50, seed=3)
    assert g.sample(50, seed=3) != g.sample(50, seed=4)
    assert torch.equal(g.batch(20, 1).tokens, g.batch(20, 1).tokens)


def test_grammar_vocabulary_and_lengths():
    g = Grammar()
    assert 200 <= len(grammar_words()) <= 400
    assert len(g.vocab) == len(grammar_words()) + 3  # PAD, BOS, EOS
    sentences = g.sample(2000, seed=0)
    assert max(len(s) for s in sentences) <= MAX_LEN - 1  # EOS makes MAX_LEN
    assert min(len(s) for s in sentences) >= 3
    assert set(w for s in sentences for w in s) <= set(grammar_words())
    batch = g.batch(100, seed=0)
    assert int(batch.lengths.max()) <= MAX_LEN


def test_grammar_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="adjective"):
        Grammar(GrammarConfig(adjective=1.5))
    with pytest.raises(ValueError, match="female_subject \\+ male_subject"):
        Grammar(GrammarConfig(female_subject=0.6, male_subject=0.6))
    with pytest.raises(KeyError, match="unknown topic"):
        topic_words("cooking")


def test_every_task_has_support_and_a_reachable_target():
    """Each constraint's feature is neither always 0 nor always 1 on the corpus: a pointwise constraint has
    support, and a distributional target μ̄ lies strictly inside the range, away from the corpus moment."""
    g = Grammar()
    corpus = g.batch(3000, seed=0)
    tasks = control_tasks(g.vocab)
    assert tuple(tasks) == TASK_NAMES
    kinds = {name: t.kind for name, t in tasks.items()}
    assert kinds == {"word_amazing": "pointwise", "wordlist_politics": "pointwise", "female_50": "distributional",
                     "topics_25": "distributional", "hybrid_sports_female": "hybrid"}
    for task in tasks.values():
        for c in task.constraints:
            mean = float(c.values(corpus).mean())
            assert 0.005 < mean < 0.95, (task.name, c.name, mean)
            if not c.pointwise:
                assert abs(mean - c.moment) > 0.05, (task.name, c.name, mean)  # the target moves a


def test_features_on_hand_written_sentences():
    g = Grammar()
    batch = SequenceBatch.from_strings(["she saw the amazing woman", "he and the man voted", "they played football"],
                                       g.vocab)
    tasks = control_tasks(g.vocab)
    amazing = tasks["word_amazing"].constraints[0]
    assert amazing.values(batch).tolist() == [1.0, 0.0, 0.0]
    politics = tasks["wordlist_politics"].constraints[0]
    assert politics.values(batch).tolist() == [0.0, 1.0, 0.0]
    sports, more_female = tasks["hybrid_sports_female"].constraints
    assert sports.values(batch).tolist() == [0.0, 0.0, 1.0]
    assert more_female.values(batch).tolist() == [1.0, 0.0, 0.0]
    female_ids = torch.tensor(g.vocab.encode(["she", "woman"], add_eos=False))
    assert count_of(batch, female_ids).tolist() == [2, 0, 0]
    assert contains_any(batch, female_ids).tolist() == [True, False, False]


# --- the cached a(x) ------------------------------------------------------------------------------------------
def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQRL_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SEQRL_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "seqrl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "seqrl"


def test_lm_cache_round_trips_and_rebuilds_on_a_changed_config(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQRL_CACHE", str(tmp_path))
    first = load_or_train_lm(TINY)
    path = cache_path(TINY)
    assert path.is_file() and path.parent == tmp_path
    assert not any(p.requires_grad for p in first.parameters())

    calls = []
    real_train = pretrained.train_lm
    monkeypatch.setattr(pretrained, "train_lm", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    again = load_or_train_lm(TINY)  # read back: no training, same weights
    assert calls == []
    for (k, v), (k2, v2) in zip(first.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)

    changed = LMConfig(**{**TINY.__dict__, "epochs": 2})
    assert changed.key() != TINY.key() and cache_path(changed) != path
    load_or_train_lm(changed)
    assert calls == [1] and cache_path(changed).is_file()


def test_corrupt_or_foreign_cache_file_is_retrained_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQRL_CACHE", str(tmp_path))
    path = cache_path(TINY)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unusable.*retraining"):
        policy = load_or_train_lm(TINY)
    assert policy.vocab == Grammar().vocab
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_or_train_lm(TINY)  # the rebuilt file now loads silently
    other = LMConfig(**{**TINY.__dict__, "seed": 5})
    cache_path(other).write_bytes(path.read_bytes())  # a file under the wrong name holds another key
    with pytest.warns(UserWarning, match="key"):
        load_or_train_lm(other)


def test_lm_config_rejects_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        LMConfig(epochs=0)
    with pytest.raises(ValueError, match="dropout"):
        LMConfig(dropout=1.0)
