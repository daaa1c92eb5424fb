"""Attention for RNN decoders: Bahdanau (additive) and Luong (dot, general, concat).

Axis legend: B batch, S source length, Q query (decoder state) size, K key (encoder output) size.

Each module splits scoring in two: ``keys(encoder_outputs)`` runs once per source (the
projection of the encoder outputs), ``forward(query, keys, values, padding_mask)`` runs once per
decoder step. Padding (True in ``padding_mask``) is set to -inf before the softmax, so a padded
source position gets weight exactly 0. Every row must hold at least one real position.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BahdanauAttention", "LuongAttention", "LUONG_SCORES", "masked_attention"]

LUONG_SCORES = ("dot", "general", "concat")


def masked_attention(
    scores: Tensor, values: Tensor, padding_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Softmax over scores (B, S) with padding at -inf; returns context (B, K) and weights (B, S)."""
    if padding_mask is not None:
        scores = scores.masked_fill(padding_mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(values.dtype)
    context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)  # (B, K)
    return context, weights


class BahdanauAttention(nn.Module):
    """score(s, h_j) = v^T tanh(W_q s + W_k h_j) (Bahdanau et al., 2015); s is the previous state."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int | None = None) -> None:
        super().__init__()
        attn_dim = attn_dim or query_dim
        self.key_proj = nn.Linear(key_dim, attn_dim, bias=False)
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def keys(self, encoder_outputs: Tensor) -> Tensor:
        """W_k h_j for every source position, once per source: (B, S, K) -> (B, S, A)."""
        return self.key_proj(encoder_outputs)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """query (B, Q), keys (B, S, A), values (B, S, K) -> context (B, K), weights (B, S)."""
        hidden = torch.tanh(keys + self.query_proj(query).unsqueeze(1))  # (B, S, A)
        return masked_attention(self.v(hidden).squeeze(-1), values, padding_mask)


class LuongAttention(nn.Module):
    """Luong et al. (2015) scores: dot s·h_j, general s·W h_j, concat v^T tanh(W [s; h_j])."""

    def __init__(
        self, query_dim: int, key_dim: int, score: str = "general", attn_dim: int | None = None
    ) -> None:
        super().__init__()
        if score not in LUONG_SCORES:
            raise ValueError(f"LuongAttention: score={score!r} is not one of {LUONG_SCORES}.")
        if score == "dot" and query_dim != key_dim:
            raise ValueError(
                f"LuongAttention(score='dot') needs query_dim == key_dim; got {query_dim} and "
                f"{key_dim}. Use score='general' to learn a projection."
            )
        self.score = score
        if score == "general":
            self.key_proj = nn.Linear(key_dim, query_dim, bias=False)
        elif score == "concat":
            # W [s; h] = W_s s + W_h h: the h half is computed once per source.
            attn_dim = attn_dim or query_dim
            self.key_proj = nn.Linear(key_dim, attn_dim, bias=False)
            self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
            self.v = nn.Linear(attn_dim, 1, bias=False)

    def keys(self, encoder_outputs: Tensor) -> Tensor:
        """The per-source part of the score: h_j (dot), W h_j (general), W_h h_j (concat)."""
        return encoder_outputs if self.score == "dot" else self.key_proj(encoder_outputs)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """query (B, Q) current state, keys (B, S, *), values (B, S, K) -> context (B, K), weights (B, S)."""
        if self.score == "concat":
            hidden = torch.tanh(keys + self.query_proj(query).unsqueeze(1))  # (B, S, A)
            scores = self.v(hidden).squeeze(-1)
        else:
            scores = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)
        return masked_attention(scores, values, padding_mask)
