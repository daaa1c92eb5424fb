"""Positional information: additive sinusoidal / learned embeddings and rotary (RoPE).

Additive encodings map position ids to vectors, ``pos_emb(positions) -> (..., d_model)``, and the
model adds them to the (scaled) token embeddings. Rotary is applied to queries and keys inside
attention (``RotaryEmbedding.rotate(x, positions)``) and leaves values alone.

Position ids are given explicitly, (len,) or (batch, len), so cached decoding passes the absolute
positions of the new tokens and left-padded prompts pass per-row positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding"]


def _check_positions(positions: Tensor, max_len: int, owner: str) -> None:
    # Out-of-range positions would index garbage (sinusoidal) or raise an opaque index error.
    # While torch.export traces (ONNX export) the check is data-dependent and cannot be traced;
    # the models check their lengths against max_len from shapes before they get here.
    if torch.compiler.is_exporting():
        return
    if positions.numel() and int(positions.max()) >= max_len:
        raise ValueError(
            f"{owner}: position {int(positions.max())} is >= max_len={max_len}; "
            f"build the model with a larger max_len or feed shorter sequences."
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sin/cos encodings of Vaswani et al. (2017): positions -> (..., d_model)."""

    table: Tensor

    def __init__(self, d_model: int, max_len: int = 1024) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"SinusoidalPositionalEncoding: d_model={d_model} must be even.")
        self.max_len = max_len
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (max_len, 1)
        inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq)
        # Not persistent: it is a function of (d_model, max_len), not a learned weight.
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """Encodings for position ids (len,) or (batch, len) -> (..., d_model)."""
        _check_positions(positions, self.max_len, "SinusoidalPositionalEncoding")
        return self.table[positions]


class LearnedPositionalEmbedding(nn.Module):
    """Learned absolute position embeddings (GPT-2 style): positions -> (..., d_model)."""

    def __init__(self, d_model: int, max_len: int = 1024) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, positions: Tensor) -> Tensor:
        """Embeddings for position ids (len,) or (batch, len) -> (..., d_model)."""
        _check_positions(positions, self.max_len, "LearnedPositionalEmbedding")
        return self.embedding(positions)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., 2021), GPT-NeoX "rotate half" layout.

    ``rotate(x, positions)`` rotates pairs (x[..., i], x[..., i + head_dim/2]) by angle
    ``position * base**(-2i/head_dim)``, so q·k depends only on the relative position.
    """

    cos: Tensor
    sin: Tensor

    def __init__(self, head_dim: int, max_len: int = 1024, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding: head_dim={head_dim} must be even.")
        self.head_dim = head_dim
        self.max_len = max_len
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (max_len, head_dim/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        """x (batch, n_heads, len, head_dim) rotated at positions (len,) or (batch, len)."""
        # No range check here: it runs once per layer and would sync the device each time; the
        # models check sequence lengths against max_len once per call.
        cos, sin = self.cos[positions], self.sin[positions]  # (..., len, head_dim/2)
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, len, head_dim/2)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Same as ``rotate``."""
        return self.rotate(x, positions)
