"""Learned-query pooling: AttentionPooling (sequence -> vector) and LatentQueryEncoder (set -> latents).

Seed 004's user mean-pooled a grid encoder (losing where things are) and used one shallow
cross-attention for the set encoder. ``AttentionPooling`` replaces the mean with a learned query;
``LatentQueryEncoder`` is a Perceiver-style stack: learned latent tokens cross-attend to the inputs,
then self-attend among themselves, with pre-norm RMSNorm and optional layer-scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from treadmill.nn.attention import MultiHeadAttention
from treadmill.nn.dropout import Dropout
from treadmill.nn.feedforward import FeedForward
from treadmill.nn.norms import LayerScale, RMSNorm
from treadmill.nn.transformer import EncoderBlock, encoder_block

__all__ = ["AttentionPooling", "CrossAttentionBlock", "LatentQueryEncoder"]


class AttentionPooling(nn.Module):
    """One learned query attends over x (B, S, D) -> (B, D); padding (True in mask) gets weight 0."""

    def __init__(self, d_model: int, n_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.attention = MultiHeadAttention(d_model, n_heads, dropout)

    def forward(
        self, x: Tensor, padding_mask: Tensor | None = None, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x (B, S, D), padding_mask (B, S) True = pad -> (B, D) (and weights (B, S) if asked)."""
        query = self.query.expand(x.shape[0], -1, -1)  # (B, 1, D)
        out = self.attention(query, x, key_padding_mask=padding_mask, need_weights=need_weights)
        pooled = out.output.squeeze(1)
        if need_weights:
            assert out.weights is not None
            return pooled, out.weights.squeeze(1)
        return pooled


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries and inputs normalised separately) then feed-forward."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "gelu",
        layer_scale_init: float | None = None,
    ) -> None:
        super().__init__()
        self.norm_q = RMSNorm(d_model)
        self.norm_kv = RMSNorm(d_model)
        self.norm_ff = RMSNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, n_heads)
        self.feed_forward = FeedForward(d_model, d_ff, activation)
        self.dropout = Dropout(dropout)
        make_scale = (
            (lambda: nn.Identity())
            if layer_scale_init is None
            else (lambda: LayerScale(d_model, layer_scale_init))
        )
        self.scale_attn, self.scale_ff = make_scale(), make_scale()

    def forward(
        self, latents: Tensor, inputs: Tensor, padding_mask: Tensor | None = None
    ) -> Tensor:
        """latents (B, N, D) attend to inputs (B, S, D) -> (B, N, D)."""
        attn = self.cross_attn(
            self.norm_q(latents), self.norm_kv(inputs), key_padding_mask=padding_mask
        ).output
        latents = latents + self.dropout(self.scale_attn(attn))
        return latents + self.dropout(self.scale_ff(self.feed_forward(self.norm_ff(latents))))


class LatentQueryEncoder(nn.Module):
    """n_latents learned queries summarise a set (B, S, D) into (B, n_latents, D).

    Each of ``n_layers`` layers: cross-attention latents <- inputs, then a self-attention block
    among the latents. RMSNorm everywhere, pre-norm, optional layer-scale, final RMSNorm.
    """

    def __init__(
        self,
        d_model: int,
        n_latents: int,
        n_heads: int,
        n_layers: int = 1,
        d_ff: int | None = None,
        dropout: float = 0.0,
        activation: str = "gelu",
        layer_scale_init: float | None = None,
    ) -> None:
        super().__init__()
        d_ff = d_ff or 4 * d_model
        self.latents = nn.Parameter(torch.randn(n_latents, d_model) * 0.02)
        self.cross_blocks = nn.ModuleList(
            CrossAttentionBlock(d_model, n_heads, d_ff, dropout, activation, layer_scale_init)
            for _ in range(n_layers)
        )
        self.self_blocks = nn.ModuleList(
            self._self_block(d_model, n_heads, d_ff, dropout, activation, layer_scale_init)
            for _ in range(n_layers)
        )
        self.final_norm = RMSNorm(d_model)

    @staticmethod
    def _self_block(
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        activation: str,
        layer_scale_init: float | None,
    ) -> EncoderBlock:
        return encoder_block(
            d_model,
            n_heads,
            d_ff,
            dropout,
            activation,
            norm_first=True,
            norm="rmsnorm",
            layer_scale_init=layer_scale_init,
        )

    def forward(self, inputs: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """inputs (B, S, D), padding_mask (B, S) True = pad -> latents (B, n_latents, D)."""
        latents = self.latents.unsqueeze(0).expand(inputs.shape[0], -1, -1)  # (B, N, D)
        for cross, self_block in zip(self.cross_blocks, self.self_blocks, strict=True):
            latents = self_block(cross(latents, inputs, padding_mask))
        return self.final_norm(latents)
