"""Text-level rewards and potentials (TRL's convention: ``fn(completions=…, prompts=…, **kwargs)``) and a local
sequence classifier as a reward, a constraint feature and a potential, built from a config in a temporary
directory (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from test_hf_prompts import MAX_LEN, write_tiny_lm

from seqrl.ebm.base import checked_log_potential, make_potential
from seqrl.ebm.constraints import Constraint
from seqrl.policies.hf import HFCausalLMPolicy
from seqrl.rewards import ClassifierReward, RewardError, classifier, compute_reward, make_reward, token_rewards
from seqrl.rewards.base import FunctionReward
from seqrl.types import SequenceBatch, Vocab

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

SEEN: dict[str, dict] = {}


# --- module-level functions, so that "module:function" names reach them as --reward does ------------------------
def reward_len(completions, **kwargs):
    """TRL's example reward: as it is written for TRL."""
    SEEN["reward_len"] = dict(kwargs, completions=completions)
    return [-abs(4 - len(c)) for c in completions]


def starts_like_prompt(completions, prompts):
    SEEN["starts_like_prompt"] = {"completions": completions, "prompts": prompts}
    return torch.tensor([float(bool(p) and c[:1] == p[-1:]) for c, p in zip(completions, prompts)])


def completions_only(completions):
    return [float(c.count("a")) for c in completions]


def one_short(completions):
    return [1.0] * (len(completions) - 1)


def log_p_text(completions):
    """A text potential: log P = −(number of characters)."""
    return [-float(len(c)) for c in completions]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> HFCausalLMPolicy:
    return HFCausalLMPolicy.from_pretrained(write_tiny_lm(tmp_path_factory.mktemp("lm")), max_len=MAX_LEN).eval()


@pytest.fixture
def batch(policy) -> SequenceBatch:
    vocab = policy.vocab
    prompts = vocab.encode_prompts(["b c", "a", "c a b", "b"])
    return SequenceBatch.from_lists([vocab.encode(t) for t in ("a b c", "c", "b b", "a")], context=prompts)


def test_a_trl_reward_function_works_as_it_is(policy, batch):
    reward = make_reward(f"{__name__}:reward_len", policy.vocab)  # what --reward module:function builds
    assert not reward.needs_reference and reward.terminal_only
    values = compute_reward(reward, batch)
    assert values.tolist() == [-1.0, -3.0, -1.0, -3.0]  # "a b c" has 5 characters, "c" 1, "b b" 3, "a" 1
    seen = SEEN["reward_len"]
    assert seen["completions"] == ["a b c", "c", "b b", "a"]  # decoded, without the prompt, EOS dropped
    assert seen["prompts"] == ["b c", "a", "c a b", "b"]  # **kwargs receives the prompts too (as TRL passes them)
    assert seen["completion_ids"] == [[1, 2, 3], [3], [2, 2], [1]]  # the tokenizer's ids, as TRL's
    assert "references" not in seen
    # Token level: a text reward scores whole completions, so its ΔR sits on the last token.
    delta = token_rewards(reward, batch)
    torch.testing.assert_close(delta.sum(1), values)
    assert delta[0].tolist() == [0.0, 0.0, 0.0, -1.0]


def test_prompts_and_tensor_returns(policy, batch):
    values = compute_reward(FunctionReward(starts_like_prompt, "starts", policy.vocab), batch)
    assert SEEN["starts_like_prompt"]["prompts"] == ["b c", "a", "c a b", "b"]
    assert values.tolist() == [0.0, 0.0, 1.0, 0.0]
    # Without a prompt: "" for each row.
    compute_reward(FunctionReward(starts_like_prompt, "starts", policy.vocab), batch.with_context(None))
    assert SEEN["starts_like_prompt"]["prompts"] == [""] * 4
    # A function that takes completions only gets nothing else.
    assert compute_reward(FunctionReward(completions_only, "a", policy.vocab), batch).tolist() == [1, 0, 0, 1]


def test_plain_vocab_rewards_decode_space_joined_symbols():
    vocab = Vocab(["x", "yy"])
    hyps = SequenceBatch.from_strings(["x yy x", "yy"], vocab)
    assert compute_reward(FunctionReward(reward_len, "len", vocab), hyps).tolist() == [-2.0, -2.0]
    assert SEEN["reward_len"]["completions"] == ["x yy x", "yy"]


def test_wrong_length_and_missing_vocabulary_are_named(policy, batch):
    with pytest.raises(RewardError, match="reward 'short' returned 3 values for 4 completions"):
        compute_reward(FunctionReward(one_short, "short", policy.vocab), batch)
    with pytest.raises(RewardError, match="needs the vocabulary to decode them"):
        compute_reward(FunctionReward(completions_only, "a"), batch)

    def needs_refs(completions, references):
        return [float(c == r) for c, r in zip(completions, references)]

    reward = FunctionReward(needs_refs, "exact", policy.vocab)
    assert reward.needs_reference
    assert compute_reward(reward, batch, batch.with_context(None)).tolist() == [1.0] * 4


def test_text_potential(policy, batch):
    potential = make_potential(f"{__name__}:log_p_text", policy.vocab)
    assert checked_log_potential(potential, batch).tolist() == [-5.0, -1.0, -3.0, -1.0]


# --- a classifier built from a config --------------------------------------------------------------------------
def write_classifier(directory):
    words = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5, "c": 6}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(words, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                                     cls_token="[CLS]", sep_token="[SEP]")
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                                     num_labels=2, id2label={0: "negative", 1: "positive"},
                                     label2id={"negative": 0, "positive": 1}, initializer_range=0.5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_classifier_reward_feature_and_potential(policy, batch, tmp_path):
    directory = write_classifier(tmp_path / "clf")
    clf = classifier(directory, "positive", vocab=policy.vocab)
    assert isinstance(clf, ClassifierReward) and not clf.needs_reference
    p = compute_reward(clf, batch)
    # By hand: the classifier's softmax of prompt + completion texts.
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True).eval()
    texts = ["b c a b c", "a c", "c a b b b", "b a"]
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)[:, 1]
    torch.testing.assert_close(p, expected)
    assert clf.texts(batch) == texts
    assert bool((p > 0).all() and (p < 1).all()) and float(p.max() - p.min()) > 1e-3
    # The label by index, log-probabilities, the completion alone.
    torch.testing.assert_close(compute_reward(classifier(directory, 1, vocab=policy.vocab, log=True), batch),
                               p.log())
    alone = classifier(directory, "negative", vocab=policy.vocab, with_prompt=False)
    assert alone.texts(batch) == ["a b c", "c", "b b", "a"]
    # A constraint feature in [0, 1] and a potential (log p).
    torch.testing.assert_close(Constraint("positive", clf, 0.5).values(batch), p.double())
    torch.testing.assert_close(checked_log_potential(clf, batch), p.log())
    # Set the vocabulary later, as make_reward does for a factory taking vocab=.
    late = make_reward("seqrl.rewards:classifier", policy.vocab, path=str(directory), label="positive")
    torch.testing.assert_close(compute_reward(late, batch), p)


def test_classifier_errors_name_the_problem(tmp_path, policy, batch):
    directory = write_classifier(tmp_path / "clf")
    with pytest.raises(RewardError, match=r"no label 'neutral'; its labels are \['negative', 'positive'\]"):
        classifier(directory, "neutral")
    with pytest.raises(RewardError, match="seqrl never downloads"):
        classifier("distilbert-base-uncased-finetuned-sst-2-english", "POSITIVE")
    with pytest.raises(RewardError, match="needs the policy's vocabulary"):
        compute_reward(classifier(directory, 0), batch)
