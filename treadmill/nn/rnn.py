"""RNN encoder and decoder pieces for seq2seq: packed bidirectional encoder, attentional decoder.

Axis legend: B batch, S source length, T target steps, E embed_dim, H hidden_dim, L num_layers.

States live in torch's layout (L, B, H) inside these modules; ``RNNSeq2Seq`` converts them to the
batch-first layout (B, L, H) of the model protocol at its boundary.

Decoder variants (``attention``):
    None         s_t = RNN(e_t, s_{t-1});                 o_t = s_t
    "bahdanau"   c_t = attn(s_{t-1}, h);  s_t = RNN([e_t; c_t], s_{t-1});  o_t = tanh(W_o [s_t; c_t])
    "luong-*"    s_t = RNN([e_t; o_{t-1}], s_{t-1});  c_t = attn(s_t, h);  o_t = tanh(W_c [c_t; s_t])
                 (o_t is Luong's attentional state h~_t; feeding it back is "input feeding")
Logits are computed from o_t by the model's output projection.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from treadmill.nn.dropout import Dropout
from treadmill.nn.rnn_attention import BahdanauAttention, LuongAttention

__all__ = [
    "RNNEncoder",
    "RNNDecoder",
    "RNNState",
    "EncoderOutput",
    "RNN_CELLS",
    "RNN_ATTENTIONS",
    "build_rnn_attention",
    "run_rnn",
]

RNN_CELLS = ("lstm", "gru")
RNN_ATTENTIONS = (None, "bahdanau", "luong-dot", "luong-general", "luong-concat")


def _rnn(
    cell: str, input_dim: int, hidden_dim: int, num_layers: int, dropout: float, bidirectional: bool
) -> nn.RNNBase:
    if cell not in RNN_CELLS:
        raise ValueError(f"cell={cell!r} is not one of {RNN_CELLS}.")
    cls = nn.LSTM if cell == "lstm" else nn.GRU
    # torch warns (and does nothing) for inter-layer dropout with one layer.
    return cls(
        input_dim,
        hidden_dim,
        num_layers,
        batch_first=True,
        dropout=dropout if num_layers > 1 else 0.0,
        bidirectional=bidirectional,
    )


def run_rnn(rnn: nn.RNNBase, x: Any, hx: Any = None) -> tuple[Any, Any]:
    """rnn(x, hx), in float32 with autocast off under CPU autocast.

    torch 2.13's oneDNN LSTM cannot run float32 inputs under CPU bfloat16 autocast ("could not
    create a primitive descriptor"), and a long recurrence is better kept in float32 anyway; GRU
    is already float32 there (it is not on autocast's CPU list). CUDA autocast is left alone.
    """
    device = x.data.device if isinstance(x, PackedSequence) else x.device
    if device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return rnn(x, hx)
    with torch.autocast("cpu", enabled=False):
        x = x.to(torch.float32)
        if hx is not None:
            hx = tuple(h.float() for h in hx) if isinstance(hx, tuple) else hx.float()
        return rnn(x, hx)


class EncoderOutput(NamedTuple):
    """outputs (B, S, H) (directions concatenated); final h and c (B, L, H), both directions per layer; c None for GRU."""

    outputs: Tensor
    final_h: Tensor
    final_c: Tensor | None


class RNNEncoder(nn.Module):
    """Embedding + (bi)LSTM/GRU over packed sequences; each direction has hidden_dim/2 when bidirectional.

    Splitting hidden_dim across directions (as OpenNMT's "brnn" does) keeps encoder outputs at
    hidden_dim, so Luong's dot score works with a bidirectional encoder.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        bidirectional: bool = True,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        if bidirectional and hidden_dim % 2:
            raise ValueError(
                f"RNNEncoder: hidden_dim={hidden_dim} must be even with a bidirectional encoder "
                f"(each direction gets hidden_dim/2)."
            )
        self.num_layers = num_layers
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.dropout = Dropout(dropout)
        self.rnn = _rnn(
            cell, embed_dim, hidden_dim // self.directions, num_layers, dropout, bidirectional
        )

    def forward(self, src: Tensor, lengths: Tensor) -> EncoderOutput:
        """src (B, S), lengths (B,) real tokens per row (right padding) -> EncoderOutput."""
        batch, src_len = src.shape
        emb = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, state = run_rnn(self.rnn, packed)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src_len)
        h, c = state if isinstance(state, tuple) else (state, None)

        def batch_first(s: Tensor) -> Tensor:
            # (L*dirs, B, H/dirs) -> (L, dirs, B, H/dirs) -> (B, L, dirs, H/dirs) -> (B, L, H)
            s = s.view(self.num_layers, self.directions, batch, -1).permute(2, 0, 1, 3)
            return s.reshape(batch, self.num_layers, -1)

        return EncoderOutput(outputs, batch_first(h), None if c is None else batch_first(c))


def build_rnn_attention(
    kind: str | None, hidden_dim: int
) -> BahdanauAttention | LuongAttention | None:
    """The attention module for a decoder variant (query and key sizes are both hidden_dim)."""
    if kind is None:
        return None
    if kind == "bahdanau":
        return BahdanauAttention(hidden_dim, hidden_dim)
    if kind in ("luong-dot", "luong-general", "luong-concat"):
        return LuongAttention(hidden_dim, hidden_dim, score=kind.split("-", 1)[1])
    raise ValueError(f"attention={kind!r} is not one of {RNN_ATTENTIONS}.")


class RNNState(NamedTuple):
    """Decoder state in torch's layout: h (L, B, H), c (L, B, H) or None, feed (B, H) or None."""

    h: Tensor
    c: Tensor | None
    feed: Tensor | None


class RNNDecoder(nn.Module):
    """Embedding + LSTM/GRU decoder, without attention, with Bahdanau, or with Luong + input feeding."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        cell: str = "lstm",
        attention: str | None = None,
        dropout: float = 0.0,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        if attention not in RNN_ATTENTIONS:
            raise ValueError(f"attention={attention!r} is not one of {RNN_ATTENTIONS}.")
        self.kind = attention
        self.hidden_dim = hidden_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.dropout = Dropout(dropout)
        extra = 0 if attention is None else hidden_dim  # Bahdanau context or Luong input feeding
        self.rnn = _rnn(cell, embed_dim + extra, hidden_dim, num_layers, dropout, False)
        self.attention: BahdanauAttention | LuongAttention | None
        self.attention = build_rnn_attention(attention, hidden_dim)
        # W_o [s; c] (Bahdanau) or W_c [c; s] (Luong): the attentional output state.
        self.combine = (
            None if attention is None else nn.Linear(2 * hidden_dim, hidden_dim, bias=False)
        )

    def initial_feed(self, batch: int, like: Tensor) -> Tensor | None:
        """h~_0 = 0 for Luong input feeding; None for the other variants."""
        if self.kind is None or self.kind == "bahdanau":
            return None
        return like.new_zeros(batch, self.hidden_dim)

    def _rnn_step(self, x: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """One time step: x (B, in) -> top-layer output (B, H) and the new state."""
        hx = state.h if state.c is None else (state.h, state.c)
        out, new = run_rnn(self.rnn, x.unsqueeze(1), hx)
        h, c = new if isinstance(new, tuple) else (new, None)
        return out.squeeze(1), RNNState(h, c, state.feed)

    def forward(
        self,
        tgt: Tensor,
        state: RNNState,
        values: Tensor | None = None,
        keys: Tensor | None = None,
        src_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, RNNState, Tensor | None]:
        """Run over tgt (B, T) from state; returns o (B, T, H), the new state, weights (B, T, S) or None."""
        emb = self.dropout(self.embedding(tgt))  # (B, T, E)
        if self.attention is None:  # no step depends on attention: one fused RNN call
            hx = state.h if state.c is None else (state.h, state.c)
            out, new = run_rnn(self.rnn, emb, hx)
            h, c = new if isinstance(new, tuple) else (new, None)
            return out, RNNState(h, c, None), None
        if values is None or keys is None or self.combine is None:
            raise ValueError(f"RNNDecoder(attention={self.kind!r}) needs encoder values and keys.")
        outputs, all_weights = [], []
        for t in range(emb.shape[1]):
            if self.kind == "bahdanau":
                context, weights = self.attention(state.h[-1], keys, values, src_padding_mask)
                top, state = self._rnn_step(torch.cat((emb[:, t], context), dim=-1), state)
                o = torch.tanh(self.combine(torch.cat((top, context), dim=-1)))
            else:
                assert state.feed is not None
                top, state = self._rnn_step(torch.cat((emb[:, t], state.feed), dim=-1), state)
                context, weights = self.attention(top, keys, values, src_padding_mask)
                o = torch.tanh(self.combine(torch.cat((context, top), dim=-1)))
                state = state._replace(feed=o)
            outputs.append(o)
            all_weights.append(weights)
        return torch.stack(outputs, dim=1), state, torch.stack(all_weights, dim=1)
