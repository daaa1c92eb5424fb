"""Boolean masks for attention, with ONE convention per kind of mask.

    PADDING masks  (batch, len)            True = this position is PADDING (ignore it).
                                           Same as torch's ``key_padding_mask``.
    ATTENTION masks (tgt_len, src_len) or  True = query i MAY ATTEND to key j.
                    (batch, tgt_len, src_len)
                                           Same as ``F.scaled_dot_product_attention``'s bool
                                           ``attn_mask``; the OPPOSITE of
                                           ``torch.nn.MultiheadAttention``'s bool ``attn_mask``.

The two kinds never mix silently: ``padding_to_attention_mask`` turns a padding mask into an
attention mask (``~padding``, shaped to broadcast over queries), and ``and_masks`` /
``or_masks`` combine attention masks with broadcasting.

Example, a decoder step with padded keys::

    allowed = and_masks(causal_mask(T), padding_to_attention_mask(tgt_padding_mask))
    # (batch, T, T): True where query i may look at key j
"""

from __future__ import annotations

import torch
from torch import Tensor

from treadmill.constants import PAD_ID

__all__ = [
    "padding_mask",
    "lengths_from_padding_mask",
    "positions_from_padding_mask",
    "causal_mask",
    "prefix_causal_mask",
    "padding_to_attention_mask",
    "and_masks",
    "or_masks",
]


def padding_mask(
    lengths_or_tokens: Tensor, pad_id: int = PAD_ID, max_len: int | None = None
) -> Tensor:
    """Padding mask (batch, len), True at padding, from lengths (batch,) or token ids (batch, len)."""
    if lengths_or_tokens.dim() == 2:
        return lengths_or_tokens.eq(pad_id)
    if lengths_or_tokens.dim() != 1:
        raise ValueError(
            f"padding_mask expects lengths (batch,) or tokens (batch, len); got a tensor of shape "
            f"{tuple(lengths_or_tokens.shape)}."
        )
    lengths = lengths_or_tokens
    if max_len is None:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)  # (batch, max_len)


def lengths_from_padding_mask(mask: Tensor) -> Tensor:
    """Number of real (non-padding) positions per row of a padding mask (batch, len) -> (batch,)."""
    return (~mask).sum(dim=-1)


def positions_from_padding_mask(mask: Tensor) -> Tensor:
    """Position ids (batch, len) counting only real tokens: a token's position = real tokens before it.

    Used for LEFT-padded prompts, so that a prompt gets the same positions alone or padded in a
    batch. Padding positions get position 0 (they are masked out of attention anyway).
    """
    real = (~mask).long()
    return (real.cumsum(dim=-1) - 1).clamp(min=0)


def causal_mask(
    tgt_len: int, src_len: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Attention mask (tgt_len, src_len), True where key j <= query i (bottom-right aligned).

    With src_len > tgt_len (queries are the LAST tgt_len positions of a cached sequence) query i
    sits at absolute position ``src_len - tgt_len + i``.
    """
    src_len = tgt_len if src_len is None else src_len
    if src_len < tgt_len:
        raise ValueError(f"causal_mask: src_len={src_len} must be >= tgt_len={tgt_len}.")
    query_pos = torch.arange(src_len - tgt_len, src_len, device=device)
    key_pos = torch.arange(src_len, device=device)
    return key_pos.unsqueeze(0) <= query_pos.unsqueeze(1)


def prefix_causal_mask(
    tgt_len: int, n_prefix: int, device: torch.device | str | None = None
) -> Tensor:
    """Attention mask (T, T) for prefix-LM: the first n_prefix positions see each other both ways.

    Positions >= n_prefix attend causally (which includes the whole prefix). This is seed 003's
    hybrid mask: latent tokens bidirectional, context tokens causal.
    """
    if n_prefix < 0:
        raise ValueError(f"prefix_causal_mask: n_prefix={n_prefix} must be >= 0.")
    mask = causal_mask(tgt_len, device=device)
    n = min(n_prefix, tgt_len)
    mask[:n, :n] = True
    return mask


def padding_to_attention_mask(padding: Tensor) -> Tensor:
    """Key padding mask (batch, src_len), True = pad -> attention mask (batch, 1, src_len), True = may attend."""
    if padding.dtype != torch.bool:
        raise TypeError(f"padding mask must be bool (True = padding); got dtype {padding.dtype}.")
    return (~padding).unsqueeze(-2)


def and_masks(*masks: Tensor | None) -> Tensor | None:
    """Attention masks combined with AND (broadcasting); None entries are skipped (None if all are)."""
    out: Tensor | None = None
    for mask in masks:
        if mask is not None:
            out = mask if out is None else out & mask
    return out


def or_masks(*masks: Tensor | None) -> Tensor | None:
    """Attention masks combined with OR (broadcasting); None entries are skipped (None if all are)."""
    out: Tensor | None = None
    for mask in masks:
        if mask is not None:
            out = mask if out is None else out | mask
    return out
