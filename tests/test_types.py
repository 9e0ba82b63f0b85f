import pytest
import torch

from seqrl.types import BatchError, SequenceBatch, Vocab, VocabError, concat_batches


def test_vocab_roundtrip_and_specials():
    v = Vocab(["a", "b", "c"])
    assert (v.pad, v.bos, v.eos) == (0, 1, 2)
    ids = v.encode("a c b")
    assert ids == [3, 5, 4, 2]
    assert v.decode(ids) == ["a", "c", "b"]
    assert v.to_string(ids + [0, 0]) == "a c b"
    assert v.generatable_mask().tolist() == [False, False, True, True, True, True]


def test_unknown_token_policies():
    strict = Vocab(["a"])
    with pytest.raises(VocabError, match="unknown symbol 'z'"):
        strict.encode("a z")
    lenient = Vocab(["a"], unknown="map")
    assert lenient.encode("a z") == [4, 3, 2]
    with pytest.raises(VocabError, match="reserved"):
        Vocab(["<eos>"])
    with pytest.raises(VocabError, match="duplicate"):
        Vocab(["a", "a"])
    with pytest.raises(VocabError, match="at least one symbol"):
        Vocab([])


def test_build_vocab_from_data_and_empty_data():
    v = Vocab.build(["a b b", "b c"], min_freq=2)
    assert v.symbols == ["b"]
    with pytest.raises(VocabError, match="empty"):
        Vocab.build([])


def test_batch_shapes_masks_and_validation():
    v = Vocab(["a", "b"])
    batch = SequenceBatch.from_strings(["a b", "b", ""], v)
    assert batch.tokens.shape == (3, 3)
    assert batch.lengths.tolist() == [3, 2, 1]
    assert batch.mask_t.tolist() == [[True] * 3, [True, True, False], [True, False, False]]
    batch.validate(v, max_len=3)
    with pytest.raises(BatchError, match="max_len"):
        batch.validate(v, max_len=2)
    with pytest.raises(BatchError, match="end with EOS"):
        SequenceBatch(torch.tensor([[3, 4]]), torch.tensor([2])).validate(v)
    with pytest.raises(BatchError, match=r"\[B, T\]"):
        SequenceBatch(torch.tensor([3, 2]), torch.tensor([2]))
    with pytest.raises(BatchError, match="lengths must be"):
        SequenceBatch(torch.tensor([[3, 2]]), torch.tensor([2, 2]))
    with pytest.raises(BatchError, match="empty data"):
        SequenceBatch.from_lists([])


def test_concat_pads_to_widest():
    v = Vocab(["a"])
    both = concat_batches([SequenceBatch.from_strings(["a a a"], v), SequenceBatch.from_strings([""], v)])
    assert both.tokens.tolist() == [[3, 3, 3, 2], [2, 0, 0, 0]]
