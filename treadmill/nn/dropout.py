"""Dropout with a cheaper mask on CPU: 16 random bits per element instead of one float draw.

On CPU, ``torch.nn.functional.dropout`` draws a float from the Mersenne Twister for every element
(``bernoulli_``) and keeps a float mask for the backward pass. In the BART-sized training step of
``bench/seq2seq_throughput.py`` that drawing was 13% of the step. Here one 64-bit draw decides four
elements: it is read as four 16-bit lanes, each compared with a threshold, and the mask is kept as
bool (a quarter of the float mask's memory). The output is ``where(keep, x, 0) / (1 - p)``, as for
torch's dropout; only the random stream differs, so seeded runs with dropout draw other masks
than ``nn.Dropout`` would.

The drop probability is ``p`` rounded to a multiple of 2**-15 (the top lane of a draw holds 15
random bits, since ``random_()`` on int64 samples [0, 2**63)): 0.1 becomes 0.1000061. Elsewhere
(CUDA, where torch's fused kernel is fast; ``p`` of 0 or 1) torch's own dropout runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "dropout", "dropout_add", "keep_mask"]

_LANE_STEPS = 32768  # 2**15: the resolution of the drop probability


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> Tensor:
    """A bool tensor of `shape`, each element True (kept) with probability 1 - p (p rounded to 2**-15)."""
    numel = 1
    for size in shape:
        numel *= size
    lanes = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_()
    lanes = lanes.view(torch.int16).view(-1, 4)
    drop_steps = round(p * _LANE_STEPS)
    # Lanes 0-2 are uniform over [-32768, 32767] (16 bits), lane 3 over [0, 32767] (15 bits, the
    # int64's sign bit is always 0): both thresholds drop exactly drop_steps / 2**15 of the values.
    low = -_LANE_STEPS + 2 * drop_steps
    thresholds = torch.tensor([low, low, low, drop_steps], dtype=torch.int16, device=device)
    return lanes.ge(thresholds).view(-1)[:numel].view(shape)


class _MaskedScale(torch.autograd.Function):
    """y = where(keep, x, 0) * scale; the backward applies the same bool mask to the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0).mul_(ctx.scale), None, None


class _MaskedScaleAdd(torch.autograd.Function):
    """y = residual + where(keep, x, 0) * scale, written into one new tensor (a residual block's sum)."""

    @staticmethod
    def forward(ctx, residual: Tensor, x: Tensor, keep: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0).mul_(scale).add_(residual)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return grad, torch.where(keep, grad, 0).mul_(ctx.scale), None, None


def _uses_cheap_mask(x: Tensor, p: float) -> bool:
    """Whether this module's CPU mask applies (else torch's dropout runs); checks p."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1]; got p={p}.")
    return x.device.type == "cpu" and p < 1.0 and x.is_floating_point()


def dropout_add(residual: Tensor, x: Tensor, p: float, training: bool = True) -> Tensor:
    """residual + dropout(x, p): a residual connection's sum, in one output tensor on CPU."""
    if not training or p == 0.0:
        return residual + x
    if not _uses_cheap_mask(x, p) or residual.shape != x.shape or residual.dtype != x.dtype:
        return residual + dropout(x, p, training)
    return _MaskedScaleAdd.apply(residual, x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout of `x` with drop probability `p` (identity when not training)."""
    if not training or p == 0.0:
        return x
    if not _uses_cheap_mask(x, p):
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


class Dropout(nn.Module):
    """Drop-in for ``torch.nn.Dropout`` (attribute ``p``) using the cheaper CPU mask of this module."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1]; got p={p}.")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x with elements zeroed with probability p and the rest scaled by 1 / (1 - p) in training."""
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
