"""RNNSeq2Seq: LSTM/GRU encoder-decoder with optional Bahdanau or Luong attention, protocol-ready.

Axis legend: B batch, S source length, T target length, H hidden_dim, L n_layers.

    src -> RNNEncoder (packed, bidirectional: hidden_dim/2 per direction) -> outputs (B, S, H)
        final states (B, L, H) -> bridge: tanh(Linear) -> decoder initial state
    tgt -> RNNDecoder (none | bahdanau | luong-* with input feeding) -> dropout -> Linear -> logits

memory (dict, batch first): ``outputs`` (B, S, H); ``keys`` (B, S, *) the per-source part of the
attention scores (attention models only); ``state`` (B, L, H); ``cell`` (B, L, H) for LSTM;
``padding_mask`` (B, S) bool, the mask encode used (given, or the trailing PADs when None).
cache (dict, batch first): ``state``, ``cell`` (LSTM), ``feed`` (B, H) (Luong's h~ of the last
step), and ``length`` (int): how many target positions the state has consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.constants import PAD_ID
from treadmill.models._checks import (
    check_choice,
    check_config,
    check_dropout,
    check_positive,
    config_error,
)
from treadmill.nn.dropout import Dropout
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
    n_layers: int = 1
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
            n_layers=self.n_layers,
        )
        check_dropout(owner, dropout=self.dropout)
        check_choice(owner, "cell", self.cell, RNN_CELLS)
        check_choice(owner, "attention", self.attention, RNN_ATTENTIONS)
        if self.bidirectional_encoder and self.hidden_dim % 2:
            raise config_error(
                f"{owner}.hidden_dim={self.hidden_dim} must be even with bidirectional_encoder=True "
                f"(each direction gets hidden_dim/2).", "hidden_dim")


def _lengths(src: Tensor, src_padding_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(lengths (B,), mask (B, S)) from a right-padded mask, or from src's PAD tokens when None."""
    if src_padding_mask is None:
        return _lengths_from_pads(src)
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
    return lengths, src_padding_mask


def _lengths_from_pads(src: Tensor) -> tuple[Tensor, Tensor]:
    """Lengths up to each row's last non-PAD token (at least 1) and the matching mask (B, S).

    Only trailing PADs count as padding: a packed sequence cannot skip interior positions, and a
    row of PADs keeps one position so that packing has something to run over.
    """
    positions = torch.arange(1, src.shape[1] + 1, device=src.device)  # (S,) 1-based
    last_real = (src.ne(PAD_ID) * positions).amax(dim=1)  # (B,), 0 for an all-PAD row
    lengths = last_real.clamp_min(1)
    return lengths, positions[None, :] > lengths[:, None]


class RNNSeq2Seq(nn.Module):
    """RNN encoder-decoder implementing the Seq2SeqModel protocol."""

    is_encoder_decoder = True

    def __init__(self, config: RNNSeq2SeqConfig) -> None:
        super().__init__()
        check_config("RNNSeq2Seq", config, RNNSeq2SeqConfig, "rnn_seq2seq")
        self.config = cfg = config
        self.encoder = RNNEncoder(
            cfg.src_vocab_size,
            cfg.embed_dim,
            cfg.hidden_dim,
            cfg.n_layers,
            cfg.cell,
            cfg.dropout,
            cfg.bidirectional_encoder,
            padding_idx=PAD_ID,
        )
        # Bridge: encoder final states (both directions, concatenated) -> decoder initial state.
        self.bridge_h = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        self.bridge_c = nn.Linear(cfg.hidden_dim, cfg.hidden_dim) if cfg.cell == "lstm" else None
        self.decoder = RNNDecoder(
            cfg.tgt_vocab_size,
            cfg.embed_dim,
            cfg.hidden_dim,
            cfg.n_layers,
            cfg.cell,
            cfg.attention,
            cfg.dropout,
            padding_idx=PAD_ID,
        )
        self.dropout = Dropout(cfg.dropout)
        self.output_proj = nn.Linear(cfg.hidden_dim, cfg.tgt_vocab_size)

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """src (B, S), right-padded mask (B, S) True = pad (None: trailing PADs) -> memory dict."""
        lengths, mask = _lengths(src, src_padding_mask)
        enc = self.encoder(src, lengths)
        # padding_mask rides with the memory so that decode(..., None) hides what encode hid.
        memory = {
            "outputs": enc.outputs,
            "state": torch.tanh(self.bridge_h(enc.final_h)),
            "padding_mask": mask,
        }
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
        """Logits (B, T - k, V) for the prefix (B, T) given a cache of k positions; see the protocol.

        ``src_padding_mask`` None uses the mask ``encode`` stored in ``memory``.
        """
        past = 0 if cache is None else int(cache["length"])
        if past >= tgt_prefix.shape[1]:
            raise ValueError(
                f"RNNSeq2Seq.decode: the cache already holds {past} positions but tgt_prefix has "
                f"{tgt_prefix.shape[1]}; pass the whole prefix including the new token."
            )
        batch = tgt_prefix.shape[0]
        if src_padding_mask is None:
            src_padding_mask = memory.get("padding_mask")
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

        ``src_padding_mask`` None treats the source's trailing PAD tokens as padding.
        ``tgt_padding_mask`` is accepted for the protocol; right-padded targets never reach real
        positions of a left-to-right decoder.
        """
        memory = self.encode(src, src_padding_mask)
        return self.decode(tgt_in, memory, memory["padding_mask"])[0]
