import pytest
import torch

from seqrl.types import Vocab


@pytest.fixture
def binary_vocab() -> Vocab:
    return Vocab(["0", "1"])


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give, and a loaded machine stalls them
    yield
