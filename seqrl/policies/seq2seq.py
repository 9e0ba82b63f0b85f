"""Attention encoder–decoder for conditional tasks (VAML/ERAC paper, Sec. 6.1).

Bi-LSTM encoder; LSTM decoder with dot-product attention (Luong et al., 2015) and optional
input feeding: the attentional vector of step t-1 is concatenated to the input of step t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..types import SequenceBatch, Vocab
from .base import AutoregressivePolicy, State


class Seq2SeqPolicy(AutoregressivePolicy):
    """π(y_t | y_<t, x): decoder state h_t attends over encoder states of the source x.

    score(h_t, e_s) = h_t · W_a e_s; c_t = Σ_s softmax(score)_s e_s;
    a_t = tanh(W_c [c_t; h_t]); π(· | y_<t, x) = softmax(W_o a_t).
    """

    is_conditional = True
    registry_name = "seq2seq"

    def __init__(
        self,
        vocab: Vocab,
        max_len: int,
        *,
        source_vocab: Vocab | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.1,
        input_feeding: bool = True,
    ) -> None:
        super().__init__(vocab, max_len)
        self.source_vocab = source_vocab or vocab
        self.config = dict(
            embedding_dim=embedding_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout,
            input_feeding=input_feeding,
        )
        H = hidden_size
        self.input_feeding = input_feeding
        self.num_layers = num_layers
        self.src_embedding = nn.Embedding(len(self.source_vocab), embedding_dim, padding_idx=self.source_vocab.pad)
        self.tgt_embedding = nn.Embedding(len(vocab), embedding_dim, padding_idx=vocab.pad)
        self.encoder = nn.LSTM(embedding_dim, H, num_layers, batch_first=True, bidirectional=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.bridge = nn.Linear(2 * H, 2 * H)
        self.decoder = nn.LSTM(embedding_dim + (H if input_feeding else 0), H, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.attn_proj = nn.Linear(2 * H, H, bias=False)
        self.combine = nn.Linear(2 * H + H, H)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(H, len(vocab))

    def _encode(self, context: SequenceBatch) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        emb = self.dropout(self.src_embedding(context.tokens))  # (B, S, E)
        packed = nn.utils.rnn.pack_padded_sequence(emb, context.lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.encoder(packed)
        enc, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=context.tokens.shape[1])
        # Final forward and backward states of the top layer → decoder's initial state.
        h_top = torch.cat([h[-2], h[-1]], -1)  # (B, 2H)
        c_top = torch.cat([c[-2], c[-1]], -1)
        H = self.config["hidden_size"]
        h0 = torch.tanh(self.bridge(h_top))[:, :H]
        c0 = self.bridge(c_top)[:, H:]
        h0 = h0[None].expand(self.num_layers, -1, -1).contiguous()
        c0 = c0[None].expand(self.num_layers, -1, -1).contiguous()
        return enc, context.mask_t, (h0, c0)

    def init_state(self, context: SequenceBatch | None, batch_size: int) -> State:
        assert context is not None
        enc, src_mask, hc = self._encode(context)
        keys = self.attn_proj(enc)  # (B, S, H)
        feed = enc.new_zeros(batch_size, self.config["hidden_size"])
        return {"hc": hc, "feed": feed, "enc": enc, "keys": keys, "src_mask": src_mask}

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State]:
        emb = self.dropout(self.tgt_embedding(prev_tokens))  # (B, E)
        inp = torch.cat([emb, state["feed"]], -1) if self.input_feeding else emb
        out, hc = self.decoder(inp[:, None], state["hc"])
        h = out[:, 0]  # (B, H)
        scores = torch.einsum("bh,bsh->bs", h, state["keys"]).masked_fill(~state["src_mask"], float("-inf"))
        weights = F.softmax(scores, -1)
        ctx = torch.einsum("bs,bsd->bd", weights, state["enc"])  # (B, 2H)
        attn = self.dropout(torch.tanh(self.combine(torch.cat([ctx, h], -1))))
        new_state = dict(state, hc=hc, feed=attn)
        return self.output(attn), new_state

    def reorder_state(self, state: State, index: Tensor) -> State:
        h, c = state["hc"]
        return {
            "hc": (h.index_select(1, index), c.index_select(1, index)),
            "feed": state["feed"].index_select(0, index),
            "enc": state["enc"].index_select(0, index),
            "keys": state["keys"].index_select(0, index),
            "src_mask": state["src_mask"].index_select(0, index),
        }
