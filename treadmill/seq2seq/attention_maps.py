"""`attention_maps`: every layer's and head's attention for one decoded example, for pictures.

After decoding, the output is fed back teacher-forced, which gives exactly the attention the
decoder had while producing it (same prefixes, same masks, no dropout in eval mode), for every
layer and head at once:

    encoder-decoder   src -> encode; [BOS, y1 .. yn] -> decode        cross-attention
                      rows: y1 .. yn, EOS (the token each step produced); columns: the source
    decoder-only      [x1 .. xm, BOS, y1 .. yn] -> decode             self-attention
                      rows and columns: that sequence (each query position, each key)

Models without `MultiHeadAttention` (the RNN's Bahdanau/Luong attention) give their one map, as
`decode(..., return_attention=True)` returns it: one layer, one head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from treadmill.checkpoint import unwrap_model
from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.nn.attention_record import record_attention
from treadmill.training.evaluation import eval_mode

__all__ = ["AttentionMaps", "attention_maps"]

Side = Literal["src", "tgt"]


@dataclass
class AttentionMaps:
    """Attention weights (layers, heads, rows, cols) of one example, with the token id of every
    row and column and the side (source or target vocabulary) each id belongs to."""

    weights: Tensor
    kind: Literal["cross", "self"]
    row_ids: list[int]
    col_ids: list[int]
    row_sides: list[Side]
    col_sides: list[Side]

    @property
    def n_layers(self) -> int:
        """Number of attention layers recorded."""
        return int(self.weights.shape[0])

    @property
    def n_heads(self) -> int:
        """Number of heads per layer."""
        return int(self.weights.shape[1])


def _stack(recorded: dict[str, list[Tensor]]) -> Tensor | None:
    """{module: [(1, H, T, S)]} -> (layers, H, T, S) in module order; None if nothing was recorded."""
    maps = [calls[-1][0] for calls in recorded.values() if calls]
    return torch.stack(maps).float().cpu() if maps else None


def attention_maps(model: nn.Module, src: Sequence[int], output: Sequence[int], finished: bool = True) -> AttentionMaps:
    """The attention of every layer and head while `model` produced `output` (ids, no BOS/EOS)
    for the source ids `src`; `finished` says the output ended with EOS (its step gets a row)."""
    model = unwrap_model(model)
    device = next(model.parameters()).device
    source = [int(t) for t in src if int(t) != PAD_ID]
    output = [int(t) for t in output]
    encoder_decoder = bool(getattr(model, "is_encoder_decoder", True))
    wanted = "cross_attn" if encoder_decoder else "self_attn"
    with eval_mode(model), torch.inference_mode(), record_attention(model, lambda name: name.endswith(wanted)) as recorded:
        if encoder_decoder:
            src_t = torch.tensor([source], device=device)  # (1, S)
            mask = src_t == PAD_ID
            tgt_in = torch.tensor([[BOS_ID, *output]], device=device)  # (1, n + 1)
            _, _, returned = model.decode(tgt_in, model.encode(src_t, mask), mask, return_attention=True)  # type: ignore[operator]
        else:
            tokens = torch.tensor([[*source, BOS_ID, *output]], device=device)  # (1, m + 1 + n)
            _, _, returned = model.decode(tokens, None, None, return_attention=True)  # type: ignore[operator]
    weights = _stack(recorded)
    if weights is None:  # no MultiHeadAttention: the model's own map is the one layer and head
        if returned is None:
            raise ValueError(f"{type(model).__name__} returns no attention weights: there is nothing to draw.")
        weights = returned[0].float().cpu()[None, None]  # (1, 1, rows, cols)
    if encoder_decoder:
        rows = [*output, EOS_ID][: len(output) + int(finished)]
        row_sides: list[Side] = ["tgt"] * len(rows)
        col_sides: list[Side] = ["src"] * len(source)
        return AttentionMaps(weights[:, :, : len(rows)], "cross", rows, source, row_sides, col_sides)
    sequence = [*source, BOS_ID, *output]
    sides: list[Side] = ["src" if i < len(source) else "tgt" for i in range(len(sequence))]
    return AttentionMaps(weights, "self", sequence, sequence, sides, sides)
