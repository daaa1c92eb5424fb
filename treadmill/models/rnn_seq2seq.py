"""RNNSeq2Seq: LSTM/GRU encoder-decoder with optional Bahdanau or Luong attention, protocol-ready.

Axis legend: B batch, S source length, T target length, H hidden_dim, L num_layers.

    src -> RNNEncoder (packed, bidirectional: hidden_dim/2 per direction) -> outputs (B, S, H)
        final states (B, L, H) -> bridge: tanh(Linear) -> decoder initial state
    tgt -> RNNDecoder (none | bahdanau | luong-* with input feeding) -> dropout -> Linear -> logits

memory (dict, batch first): ``outputs`` (B, S, H); ``keys`` (B, S, *) the per-source part of the
attention scores (attention models only); ``state`` (B, L, H); ``cell`` (B, L, H) for LSTM.
cache (dict, batch first): ``state``, ``cell`` (LSTM), ``feed`` (B, H) (Luong's h~ of the last
step), and ``length`` (int): how many target positions the state has consumed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.constants import PAD_ID
from treadmill.models._checks import check_choice, check_dropout, check_positive
from treadmill.nn.masks import lengths_from_padding_mask
from treadmill.nn.rnn import RNN_ATTENTIONS, RNN_CELLS, RNNDecoder, RNNEncoder, RNNState

__all__ = ["RNNSeq2Seq", "RNNSeq2SeqConfig"]


@dataclass
class RNNSeq2SeqConfig:
    """Sizes and options of an RNNSeq2Seq; validated on construction."""

    src_vocab_size: int
    tgt_vocab_size: int
    embed_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 1
    cell: str = "lstm"
    attention: str | None = None
    dropout: float = 0.1
    bidirectional_encoder: bool = True

    def __post_init__(self) -> None:
        owner = "RNNSeq2SeqConfig"
        check_positive(
            owner,
            src_vocab_size=self.src_vocab_size,
            tgt_vocab_size=self.tgt_vocab_size,
            embed_dim=self.embed_dim,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
        )
        check_dropout(owner, dropout=self.dropout)
        check_choice(owner, "cell", self.cell, RNN_CELLS)
        check_choice(owner, "attention", self.attention, RNN_ATTENTIONS)
        if self.bidirectional_encoder and self.hidden_dim % 2:
            raise ValueError(
                f"{owner}.hidden_dim={self.hidden_dim} must be even with bidirectional_encoder=True "
                f"(each direction gets hidden_dim/2)."
            )


def _lengths(src: Tensor, src_padding_mask: Tensor | None) -> Tensor:
    """Real lengths (B,) from a right-padded mask; errors name the bad row."""
    if src_padding_mask is None:
        return torch.full((src.shape[0],), src.shape[1], dtype=torch.long, device=src.device)
    if src_padding_mask.shape != src.shape:
        raise ValueError(
            f"src_padding_mask shape {tuple(src_padding_mask.shape)} != src shape {tuple(src.shape)}."
        )
    lengths = lengths_from_padding_mask(src_padding_mask)
    expected = torch.arange(src.shape[1], device=src.device)[None, :] >= lengths[:, None]
    bad = (expected != src_padding_mask).any(dim=1) | (lengths == 0)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"RNNSeq2Seq: src_padding_mask row {row} is not right-padded with at least one real "
            f"token (packed sequences need True only after the last real token)."
        )
    return lengths


class RNNSeq2Seq(nn.Module):
    """RNN encoder-decoder implementing the Seq2SeqModel protocol."""

    is_encoder_decoder = True

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        attention: str | None = None,
        dropout: float = 0.1,
        bidirectional_encoder: bool = True,
    ) -> None:
        super().__init__()
        self.config = RNNSeq2SeqConfig(
            src_vocab_size,
            tgt_vocab_size,
            embed_dim,
            hidden_dim,
            num_layers,
            cell,
            attention,
            dropout,
            bidirectional_encoder,
        )
        self.encoder = RNNEncoder(
            src_vocab_size,
            embed_dim,
            hidden_dim,
            num_layers,
            cell,
            dropout,
            bidirectional_encoder,
            padding_idx=PAD_ID,
        )
        # Bridge: encoder final states (both directions, concatenated) -> decoder initial state.
        self.bridge_h = nn.Linear(hidden_dim, hidden_dim)
        self.bridge_c = nn.Linear(hidden_dim, hidden_dim) if cell == "lstm" else None
        self.decoder = RNNDecoder(
            tgt_vocab_size,
            embed_dim,
            hidden_dim,
            num_layers,
            cell,
            attention,
            dropout,
            padding_idx=PAD_ID,
        )
        self.dropout = nn.Dropout(dropout)
        self.output_proj = nn.Linear(hidden_dim, tgt_vocab_size)

    @classmethod
    def from_config(cls, cfg: RNNSeq2SeqConfig) -> RNNSeq2Seq:
        """Build from an RNNSeq2SeqConfig."""
        return cls(**asdict(cfg))

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """src (B, S), right-padded mask (B, S) True = pad (None = no padding) -> memory dict."""
        enc = self.encoder(src, _lengths(src, src_padding_mask))
        memory = {"outputs": enc.outputs, "state": torch.tanh(self.bridge_h(enc.final_h))}
        if self.bridge_c is not None and enc.final_c is not None:
            memory["cell"] = torch.tanh(self.bridge_c(enc.final_c))
        if self.decoder.attention is not None:
            memory["keys"] = self.decoder.attention.keys(enc.outputs)
        return memory

    def _state_from(self, source: dict[str, Any], batch: int, like: Tensor) -> RNNState:
        """Batch-first memory/cache entries -> torch's (L, B, H) decoder state."""
        h = source["state"].transpose(0, 1).contiguous()  # (L, B, H)
        c = source["cell"].transpose(0, 1).contiguous() if "cell" in source else None
        feed = source.get("feed")
        return RNNState(h, c, self.decoder.initial_feed(batch, like) if feed is None else feed)

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: dict[str, Tensor],
        src_padding_mask: Tensor | None = None,
        cache: dict[str, Any] | None = None,
        return_attention: bool = False,
    ) -> tuple[Any, ...]:
        """Logits (B, T - k, V) for the prefix (B, T) given a cache of k positions; see the protocol."""
        past = 0 if cache is None else int(cache["length"])
        if past >= tgt_prefix.shape[1]:
            raise ValueError(
                f"RNNSeq2Seq.decode: the cache already holds {past} positions but tgt_prefix has "
                f"{tgt_prefix.shape[1]}; pass the whole prefix including the new token."
            )
        batch = tgt_prefix.shape[0]
        state = self._state_from(memory if cache is None else cache, batch, memory["outputs"])
        out, state, weights = self.decoder(
            tgt_prefix[:, past:], state, memory["outputs"], memory.get("keys"), src_padding_mask
        )
        logits = self.output_proj(self.dropout(out))  # (B, T - k, V)
        new_cache: dict[str, Any] = {
            "state": state.h.transpose(0, 1),
            "length": tgt_prefix.shape[1],
        }
        if state.c is not None:
            new_cache["cell"] = state.c.transpose(0, 1)
        if state.feed is not None:
            new_cache["feed"] = state.feed
        return (logits, new_cache, weights) if return_attention else (logits, new_cache)

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher forcing: logits (B, T, V) for tgt_in (B, T) starting with BOS.

        ``tgt_padding_mask`` is accepted for the protocol; right-padded targets never reach real
        positions of a left-to-right decoder.
        """
        memory = self.encode(src, src_padding_mask)
        return self.decode(tgt_in, memory, src_padding_mask)[0]
