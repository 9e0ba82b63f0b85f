"""Every bad input gets a one-line error naming the offending file/line, option or value (issue 13, items 5–7):
user data files (TextPairTask), the gymnasium environment's contract, and policy/data/reward mismatches."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded

from seqrl.algorithms import make_algorithm
from seqrl.envs import CopyTask, MotifTask, SequenceEnv, TextPairTask, read_text_pairs
from seqrl.envs.tasks import DataFileError, PairTask
from seqrl.policies import make_policy
from seqrl.rewards.base import BaseReward, RewardError, compute_reward
from seqrl.training import FitConfig, fit
from seqrl.types import SequenceBatch, Vocab, VocabError, check_vocab

GOOD = "".join(f"s{i % 7} s{i % 3}\tt{i % 7} t{i % 3} t1\n" for i in range(60)).encode()


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, f"message spans lines: {message!r}"
    return message


# --- 5. the user's own data -------------------------------------------------------------------------------
BAD_FILES = {
    "latin-1": (b"a b\tc d\nx \xe9t\ty\n", r"pairs\.tsv:2: not UTF-8 text \(byte 0xe9 at column 3\)"),
    "binary NUL": (b"a\tb\n\x00\x01\x02\tz\n", r"pairs\.tsv:2: binary data \(NUL byte at column 1\)"),
    "gzip": (gzip.compress(GOOD), r"pairs\.tsv: gzip-compressed, not UTF-8"),
    "utf-16": ("a\tb\n".encode("utf-16"), r"pairs\.tsv: UTF-16 text, not UTF-8"),
    "empty": (b"", r"pairs\.tsv: empty data"),
    "blank lines only": (b"\n  \n\t\n", r"pairs\.tsv: empty data"),
    "BOM only": (b"\xef\xbb\xbf\n", r"pairs\.tsv: empty data"),
    "no TAB": (b"a b\tc\nno tab here\n", r"pairs\.tsv:2: expected 'source<TAB>target', got no TAB"),
    "two TABs": (b"a\tb\tc\n", r"pairs\.tsv:1: expected 'source<TAB>target', got 3 fields"),
    "empty source": (b"a\tb\n \tc d\n", r"pairs\.tsv:2: empty source side"),
    "empty target": (b"a\tb\nc d\t  \n", r"pairs\.tsv:2: empty target side"),
    "400 KB line": (b"a\tb\n" + b"x " * 200_000 + b"\ty\n", r"pairs\.tsv:2: line of 400,002 bytes exceeds"),
    "reserved token": (b"a <eos> b\tc\n", r"pairs\.tsv:1: token '<eos>' on the source side is reserved"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_data_file_named_with_line(tmp_path, case):
    content, match = BAD_FILES[case]
    path = tmp_path / "pairs.tsv"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=match) as err:
        TextPairTask(path)
    one_line(err)
    assert isinstance(err.value, ValueError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataFileError, match=r"nope\.tsv: no such file"):
        TextPairTask(tmp_path / "nope.tsv")
    with pytest.raises(DataFileError, match=r"is a directory; expected a text file"):
        TextPairTask(tmp_path)


def test_bad_valid_file_is_the_one_named(tmp_path):
    train, valid = tmp_path / "train.tsv", tmp_path / "valid.tsv"
    train.write_bytes(GOOD)
    valid.write_bytes(b"a\tb\nc\xff\td\n")
    with pytest.raises(DataFileError, match=r"valid\.tsv:2: not UTF-8 text \(byte 0xff at column 2\)"):
        TextPairTask(train, valid, valid)


def test_aligned_files_errors_name_the_file(tmp_path):
    src, tgt = tmp_path / "a.src", tmp_path / "a.tgt"
    src.write_text("x y\nz\n")
    tgt.write_text("X Y\n  \n")
    with pytest.raises(DataFileError, match=r"a\.tgt:2: empty target side"):
        read_text_pairs(src, tgt)
    tgt.write_bytes(b"X Y\nZ\xe9\n")
    with pytest.raises(DataFileError, match=r"a\.tgt:2: not UTF-8 text \(byte 0xe9 at column 2\)"):
        read_text_pairs(src, tgt)
    tgt.write_text("X Y\n")
    with pytest.raises(DataFileError, match=r"a\.src has 2 lines but .*a\.tgt has 1"):
        read_text_pairs(src, tgt)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_target_len": 0}, r"max_target_len=0: expected a positive number of tokens"),
        ({"max_source_len": "10"}, r"max_source_len='10': expected a positive number"),
        ({"max_target_len": 2.5}, r"max_target_len=2\.5"),
        ({"max_line_bytes": -1}, r"max_line_bytes=-1"),
        ({"min_freq": 0}, r"min_freq=0: expected an integer ≥ 1"),
        ({"max_len": 1}, r"max_len=1: expected an integer ≥ 2"),
        ({"valid_target": "v.tgt"}, r"valid_target='v\.tgt' given without valid="),
    ],
)
def test_bad_text_pair_options_named_before_reading(tmp_path, kwargs, match):
    """Options are checked first: the (missing) file is never opened."""
    with pytest.raises(ValueError, match=match) as err:
        TextPairTask(tmp_path / "never-read.tsv", **kwargs)
    one_line(err)


def test_data_that_cannot_make_a_task(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(GOOD)
    with pytest.raises(DataFileError, match=r"pairs\.tsv: all 60 sentence pairs exceed max_source_len=1"):
        TextPairTask(path, max_source_len=1)
    with pytest.raises(DataFileError, match=r"no token occurs min_freq=1000 times"):
        TextPairTask(path, min_freq=1000)
    path.write_bytes(b"a\tb\nc\td\n")
    with pytest.raises(DataFileError, match=r"pairs\.tsv: only 2 sentence pairs, too few to split"):
        TextPairTask(path)


def test_bom_crlf_and_unk_file_loads(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace(b"\n", b"\r\n").replace(b"s1 s1", b"s1 <unk>"))
    task = TextPairTask(path)
    assert sum(task.split(s).batch_size for s in ("train", "valid", "test")) == 60
    symbols = set(task.source_vocab.symbols) | set(task.vocab.symbols)
    assert not any(s.startswith("\ufeff") or s.endswith("\r") for s in symbols), symbols
    assert "<unk>" not in task.source_vocab.symbols and task.dropped == 0


def test_long_pairs_are_dropped_counted_and_warned(tmp_path):
    path = tmp_path / "pairs.tsv"
    long_target = " ".join(f"t{i % 5}" for i in range(15_000))
    path.write_text(GOOD.decode() + f"s1\t{long_target}\n" + "s1 " * 300 + "\tt1\n")
    with pytest.warns(UserWarning, match=r"pairs\.tsv: dropped 2 of 62 sentence pairs .*max_target_len=200 "
                      r".*\(first at line 61\)"):
        task = TextPairTask(path)
    assert task.dropped == 2 and task.dropped_by_file == {str(path): 2}
    assert task.max_len <= 201 and sum(task.split(s).batch_size for s in ("train", "valid", "test")) == 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uncapped = TextPairTask(path, max_source_len=None, max_target_len=None)
    assert uncapped.dropped == 0 and uncapped.max_len == 15_001


# --- 6. the environment keeps gymnasium's contract --------------------------------------------------------
@pytest.fixture(scope="module")
def copy_task():
    return CopyTask(num_symbols=3, max_length=4, train_size=6, valid_size=2, test_size=2)


def test_step_before_reset_and_after_the_end(copy_task):
    env = SequenceEnv(copy_task, "hamming")
    with pytest.raises(ResetNeeded, match=r"step\(\) before reset\(\): call env\.reset\(\)"):
        env.step(3)
    env.reset(seed=0)
    *_, terminated, truncated, _ = env.step(copy_task.vocab.eos)
    assert terminated and not truncated
    with pytest.raises(ResetNeeded, match=r"after the episode ended .*call env\.reset\(\)"):
        env.step(3)
    env.reset(seed=0)
    for _ in range(copy_task.max_len - 1):
        *_, terminated, truncated, _ = env.step(3)
    assert truncated and not terminated
    with pytest.raises(ResetNeeded, match=r"after the episode ended"):
        env.step(3)
    assert len(env._prefix) == copy_task.max_len - 1  # nothing appended


@pytest.mark.parametrize(
    "action",
    [2.7, 3.0, "3", True, np.bool_(True), None, np.float32(3.0), np.array([3]), np.array(3.0), torch.tensor(3.0),
     torch.tensor([3]), [3]],
    ids=lambda a: f"{type(a).__name__}:{a!r}",
)
def test_non_integer_actions_rejected(copy_task, action):
    env = SequenceEnv(copy_task, "hamming")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"is not a token id: expected an integer in \[2, 6\)") as err:
        env.step(action)
    one_line(err)
    assert env._prefix == []  # nothing computed or appended
    env.step(3)  # the episode goes on


@pytest.mark.parametrize("action", [0, 1, 6, -1, np.int64(99)])
def test_out_of_range_actions_rejected(copy_task, action):
    env = SequenceEnv(copy_task, "hamming")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action {int(action)} is not a token id in \[2, 6\)"):
        env.step(action)
    assert env._prefix == []


@pytest.mark.parametrize("action", [3, np.int64(3), np.int8(3), np.array(3), torch.tensor(3)], ids=repr)
def test_integer_like_actions_accepted(copy_task, action):
    env = SequenceEnv(copy_task, "hamming")
    env.reset(seed=0)
    env.step(action)
    assert env._prefix == [3] and type(env._prefix[0]) is int


@pytest.mark.parametrize("index", [-1, 6, 100, 2.5, "0", True, None], ids=repr)
def test_reset_index_out_of_range_or_not_an_integer(copy_task, index):
    env = SequenceEnv(copy_task, "hamming")
    if index is None:  # None means "draw one", as without the option
        env.reset(options={"index": None})
        return
    with pytest.raises(ValueError, match=r"expected an integer in \[0, 6\), the rows of the 'train' split") as err:
        env.reset(options={"index": index})
    assert repr(index) in str(err.value)
    _, info = env.reset(options={"index": np.int64(5)})
    assert info["index"] == 5


def test_reset_bad_options(copy_task):
    env = SequenceEnv(copy_task, "hamming")
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['idx'\]; the only option is 'index'"):
        env.reset(options={"idx": 0})
    with pytest.raises(TypeError, match=r"takes a dict such as \{'index': 0\}, got list"):
        env.reset(options=[0])


def test_env_constructor_options_named(copy_task):
    with pytest.raises(TypeError, match=r"dense='yes'"):
        SequenceEnv(copy_task, "hamming", dense="yes")
    with pytest.raises(ValueError, match=r"render_mode='human': expected None or one of \['ansi'\]"):
        SequenceEnv(copy_task, "hamming", render_mode="human")


def test_check_env_still_passes():
    from gymnasium.utils.env_checker import check_env

    check_env(SequenceEnv(MotifTask("11", 4, train_size=5, test_size=5)), skip_render_check=True)


# --- 7. mismatches named ---------------------------------------------------------------------------------
def test_fit_rejects_policy_with_smaller_vocab_before_training():
    small, task = CopyTask(num_symbols=3), CopyTask(num_symbols=5, train_size=20, valid_size=2, test_size=2)
    torch.manual_seed(0)
    policy = make_policy("seq2seq", small.vocab, task.max_len, source_vocab=small.source_vocab, hidden_size=8)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    with pytest.raises(VocabError, match=r"the training data holds target token id 7 but the policy's vocabulary "
                       r"has 6 ids \[0, 6\) \(the data needs ≥ 8\)") as err:
        fit(make_algorithm("mle", policy), task.split("train"), config=FitConfig(max_steps=2, progress=False))
    one_line(err)
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())  # nothing trained


def test_fit_rejects_conditional_policy_with_smaller_source_vocab():
    task = CopyTask(num_symbols=5, train_size=20, valid_size=2, test_size=2)
    policy = make_policy("seq2seq", task.vocab, task.max_len, source_vocab=Vocab(["a", "b", "c"]), hidden_size=8)
    with pytest.raises(VocabError, match=r"source token id 7 but the policy's source vocabulary has 6 ids"):
        fit(make_algorithm("mle", policy), task.split("train"), config=FitConfig(max_steps=2, progress=False))


def test_check_vocab_cases():
    task = CopyTask(num_symbols=5, train_size=4, valid_size=2, test_size=2)
    seq2seq = make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab, hidden_size=8)
    check_vocab(seq2seq, task.split("train"), "train")  # matching: fine
    check_vocab(seq2seq, task.vocab, "the task")
    check_vocab(seq2seq, None, "nothing")
    with pytest.raises(VocabError, match=r"conditional but the valid split has no sources"):
        check_vocab(seq2seq, task.split("valid").with_context(None), "the valid split")
    lstm = make_policy("lstm", Vocab(["a", "b", "c"]), 4, hidden_size=8)
    with pytest.raises(VocabError, match=r"policy's vocabulary \(6 ids\) differs from the task's \(8 ids\) "
                       r"\(id 3: 'a' vs 's0'\)"):
        check_vocab(lstm, task.vocab, "the task")
    unconditional = PairTask({s: [(["a"], ["b"])] for s in ("train", "valid", "test")}, Vocab(["a", "b", "c", "d"]),
                             Vocab(["a", "b"]))
    with pytest.raises(VocabError, match=r"holds target token id 6 but the policy's vocabulary has 6 ids"):
        check_vocab(lstm, SequenceBatch.from_lists([[6, 2]]), "the batch")
    check_vocab(lstm, unconditional.split("train").with_context(None), "the batch")  # ids 0..4: fine


class Returns(BaseReward):
    name = "bad"
    needs_reference = False

    def __init__(self, value):
        super().__init__(Vocab(["a"]))
        self.value = value

    def score(self, hyps, refs):
        return self.value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("0.5", r"returned str '0\.5'"),
        (["0.5", "1"], r"returned a list holding str '0\.5' at index 0"),
        ([0.5, None], r"returned a list holding NoneType None at index 1"),
        (None, r"returned NoneType None"),
        ({"bleu": 0.5}, r"returned dict \{'bleu': 0\.5\}"),
        (object(), r"returned object <object object at"),
        (np.array(["a", "b"]), r"returned a numpy array of dtype <U1"),
        (np.array([0.5, object()], dtype=object), r"returned a numpy array of dtype object"),
        (torch.tensor([1 + 1j, 0j]), r"returned a complex tensor"),
        ([[0.5], [1.0]], r"returned a list holding list \[0\.5\] at index 0"),
    ],
    ids=["str", "list-of-str", "list-with-None", "None", "dict", "object", "str-array", "object-array", "complex",
         "nested-list"],
)
def test_reward_returning_non_numbers_named(value, match):
    hyps = SequenceBatch.from_lists([[3, 2], [2]])
    with pytest.raises(RewardError, match=rf"reward 'bad' {match}.*expected a \[B\]=\(2,\) float tensor") as err:
        compute_reward(Returns(value), hyps)
    one_line(err)


def test_reward_numbers_accepted_and_nan_still_caught():
    hyps = SequenceBatch.from_lists([[3, 2], [2]])
    for ok in ([0.5, 1], (np.float32(0.5), 1), np.array([0.5, 1.0]), torch.tensor([0.5, 1.0], dtype=torch.float64),
               [torch.tensor(0.5), 1.0]):
        assert compute_reward(Returns(ok), hyps).tolist() == [0.5, 1.0]
    with pytest.raises(RewardError, match=r"reward 'bad' holds non-finite values"):
        compute_reward(Returns([float("nan"), 1.0]), hyps)
    with pytest.raises(RewardError, match=r"reward 'bad' returned shape \(3,\), expected \[B\]=\(2,\)"):
        compute_reward(Returns([1.0, 2.0, 3.0]), hyps)
