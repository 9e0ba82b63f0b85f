"""A small causal Transformer decoder policy (GPT-style, learned positions)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..types import SequenceBatch, Vocab
from .base import AutoregressivePolicy, State


class TransformerPolicy(AutoregressivePolicy):
    """π(y_t | y_<t) from a causal self-attention stack over BOS, y_1 … y_{t-1}.

    Sampling re-runs the stack on the prefix at each step (no key/value cache): the
    sequences seqrl targets are short, and one code path for scoring and sampling keeps
    their log-probabilities identical.
    """

    registry_name = "transformer"

    def __init__(
        self,
        vocab: Vocab,
        max_len: int,
        *,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(vocab, max_len)
        self.config = dict(d_model=d_model, num_heads=num_heads, num_layers=num_layers,
                           dim_feedforward=dim_feedforward, dropout=dropout)
        V = len(vocab)
        self.embedding = nn.Embedding(V, d_model)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward, dropout, batch_first=True, norm_first=True
        )
        self.stack = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, V)

    def _forward(self, inputs: Tensor) -> Tensor:
        T = inputs.shape[1]
        pos = torch.arange(T, device=inputs.device)
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=inputs.device)
        h = self.embedding(inputs) + self.position(pos)[None]  # (B, T, D)
        h = self.stack(h, mask=causal, is_causal=True)
        return self.output(self.norm(h))  # (B, T, V)

    def teacher_forced_logits(self, batch: SequenceBatch) -> Tensor:
        return self._forward(self._shifted_inputs(batch.tokens))

    def init_state(self, context: SequenceBatch | None, batch_size: int) -> State:
        return torch.zeros(batch_size, 0, dtype=torch.long, device=self.device)

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State]:
        prefix = torch.cat([state, prev_tokens[:, None]], 1)  # (B, t+1)
        return self._forward(prefix)[:, -1], prefix

    def reorder_state(self, state: State, index: Tensor) -> State:
        return state.index_select(0, index)
