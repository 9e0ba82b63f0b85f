"""LSTM / GRU language-model policies (the papers' default: 2-layer LSTM, one-hot inputs)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ..types import SequenceBatch, Vocab
from .base import AutoregressivePolicy, State

Cell = Literal["lstm", "gru"]


class RNNPolicy(AutoregressivePolicy):
    """Unconditional recurrent policy π(y) = Π_t softmax(W h_t)[y_t], h_t = RNN(h_{t-1}, y_{t-1}).

    Args:
        vocab: target vocabulary.
        max_len: longest sequence, EOS included.
        cell: ``"lstm"`` or ``"gru"``.
        hidden_size: units per layer (DPG paper: 200).
        num_layers: stacked layers (DPG paper: 2).
        dropout: between layers and before the output layer (DPG paper: 0.2).
        embedding_dim: ``None`` feeds one-hot vectors (as in the DPG paper); an int learns
            an embedding of that size.
    """

    registry_name = "lstm"

    def __init__(
        self,
        vocab: Vocab,
        max_len: int,
        *,
        cell: Cell = "lstm",
        hidden_size: int = 200,
        num_layers: int = 2,
        dropout: float = 0.2,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(vocab, max_len)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell={cell!r}: expected 'lstm' or 'gru'")
        self.config = dict(
            cell=cell, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, embedding_dim=embedding_dim
        )
        self.registry_name = cell
        V = len(vocab)
        self.embedding = nn.Embedding(V, embedding_dim) if embedding_dim else None
        input_size = embedding_dim or V
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            input_size, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, V)

    def _embed(self, tokens: Tensor) -> Tensor:
        if self.embedding is not None:
            return self.embedding(tokens)
        return F.one_hot(tokens, len(self.vocab)).float()

    def teacher_forced_logits(self, batch: SequenceBatch) -> Tensor:
        # One cuDNN/oneDNN call over the whole sequence instead of a Python loop of steps.
        hidden, _ = self.rnn(self._embed(self._shifted_inputs(batch.tokens)))  # (B, T, H)
        return self.output(self.dropout(hidden))  # (B, T, V)

    def init_state(self, context: SequenceBatch | None, batch_size: int) -> State:
        return None  # nn.LSTM/GRU start from zeros when given no state

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State]:
        hidden, state = self.rnn(self._embed(prev_tokens[:, None]), state)  # (B, 1, H)
        return self.output(self.dropout(hidden[:, 0])), state

    def reorder_state(self, state: State, index: Tensor) -> State:
        if state is None:
            return None
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)


class LSTMPolicy(RNNPolicy):
    registry_name = "lstm"

    def __init__(self, vocab: Vocab, max_len: int, **kwargs) -> None:
        kwargs.pop("cell", None)
        super().__init__(vocab, max_len, cell="lstm", **kwargs)


class GRUPolicy(RNNPolicy):
    registry_name = "gru"

    def __init__(self, vocab: Vocab, max_len: int, **kwargs) -> None:
        kwargs.pop("cell", None)
        super().__init__(vocab, max_len, cell="gru", **kwargs)
