"""Position-wise feed-forward networks: Linear-act-Linear (ReLU, GELU) and SwiGLU."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from treadmill.nn.dropout import Dropout

__all__ = ["FeedForward", "ACTIVATIONS"]

ACTIVATIONS = ("relu", "gelu", "swiglu")


class FeedForward(nn.Module):
    """FFN(x) = W2 · dropout(act(W1 x)); for "swiglu", act(W1 x) is silu(W_gate x) * (W_up x).

    SwiGLU (Shazeer, 2020) fuses gate and up projections into one ``w1`` of width 2*d_ff. The
    inner dropout (``dropout``) is torch.nn.Transformer's "activation dropout"; the residual
    dropout after the block is the caller's (the block's) job.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"FeedForward: activation={activation!r} is not one of {ACTIVATIONS}.")
        self.activation = activation
        width = 2 * d_ff if activation == "swiglu" else d_ff
        self.w1 = nn.Linear(d_model, width, bias=bias)
        self.w2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., d_model) -> (..., d_model)."""
        h = self.w1(x)
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        else:
            gate, up = h.chunk(2, dim=-1)  # each (..., d_ff)
            h = F.silu(gate) * up
        if self.training and self.dropout.p > 0:
            h = self.dropout(h)
        return self.w2(h)
