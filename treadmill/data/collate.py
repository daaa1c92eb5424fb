"""Collation: dynamic padding of seq2seq examples, stacking of forecast windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from treadmill.constants import PAD_ID


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> Tensor:
    """Right-pad id lists to the longest one: LongTensor (batch, max_len)."""
    max_len = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max_len), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


class Seq2SeqCollator:
    """Pads a list of seq2seq examples to the batch maximum.

    Returns {"src": (B, S) long, "tgt": (B, T) long (BOS ... EOS, PAD after),
    "src_padding_mask": (B, S) bool, "tgt_padding_mask": (B, T) bool (True at PAD),
    "index": (B,) long}. Masks come from the lengths, not from comparing ids with PAD.
    """

    def __init__(self, pad_id: int = PAD_ID) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("Seq2SeqCollator: got an empty list of examples.")
        src = pad_sequences([ex["src"] for ex in examples], self.pad_id)  # (B, S)
        tgt = pad_sequences([ex["tgt"] for ex in examples], self.pad_id)  # (B, T)
        src_lens = torch.tensor([len(ex["src"]) for ex in examples])
        tgt_lens = torch.tensor([len(ex["tgt"]) for ex in examples])
        # (B, 1) >= (1, S) -> True where the position is past the sequence end.
        src_padding_mask = torch.arange(src.size(1))[None, :] >= src_lens[:, None]
        tgt_padding_mask = torch.arange(tgt.size(1))[None, :] >= tgt_lens[:, None]
        return {
            "src": src,
            "tgt": tgt,
            "src_padding_mask": src_padding_mask,
            "tgt_padding_mask": tgt_padding_mask,
            "index": torch.tensor([int(ex["index"]) for ex in examples], dtype=torch.long),
        }


collate_seq2seq = Seq2SeqCollator()
"""Default seq2seq collate function (PAD_ID padding)."""


def collate_forecast(examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
    """Stack forecast windows: {"src": (B, context_len, 1), "tgt": (B, horizon, 1), "index": (B,)}."""
    if not examples:
        raise ValueError("collate_forecast: got an empty list of examples.")
    return {
        "src": torch.stack([ex["src"] for ex in examples]),  # (B, context_len, 1)
        "tgt": torch.stack([ex["tgt"] for ex in examples]),  # (B, horizon, 1)
        "index": torch.tensor([int(ex["index"]) for ex in examples], dtype=torch.long),
    }
