"""Normalisation layers: torch's LayerNorm and RMSNorm, a builder, and CaiT-style LayerScale."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import LayerNorm, RMSNorm

__all__ = ["LayerNorm", "RMSNorm", "LayerScale", "build_norm", "NORM_KINDS"]

NORM_KINDS = ("layernorm", "rmsnorm")


def build_norm(kind: str, d_model: int, eps: float = 1e-5) -> nn.Module:
    """A normalisation layer by name: "layernorm" (torch.nn.LayerNorm) or "rmsnorm" (torch.nn.RMSNorm)."""
    if kind == "layernorm":
        return LayerNorm(d_model, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(d_model, eps=eps)
    raise ValueError(f"norm={kind!r} is not one of {NORM_KINDS}.")


class LayerScale(nn.Module):
    """Per-channel learned scale on a residual branch (Touvron et al., 2021, CaiT), init small."""

    def __init__(self, d_model: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((d_model,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        """x (..., d_model) scaled per channel."""
        return x * self.gamma
