"""Forecasting metrics: MAE, MSE and MASE (mean absolute scaled error, Hyndman & Koehler 2006)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mae", "mse", "mase", "naive_scale"]


def _check_same_shape(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: pred has shape {tuple(pred.shape)} but target has shape "
            f"{tuple(target.shape)}; they must match (batch, horizon[, features])."
        )


def mae(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over all elements (0-dim tensor)."""
    _check_same_shape(pred, target, "mae")
    return (pred - target).abs().mean()


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements (0-dim tensor)."""
    _check_same_shape(pred, target, "mse")
    return (pred - target).pow(2).mean()


def naive_scale(history: Tensor, season: int = 1) -> Tensor:
    """In-sample MAE of the seasonal naive forecast y[t] = y[t - season] along the last dim."""
    if season < 1:
        raise ValueError(f"naive_scale: season must be >= 1, got {season}.")
    if history.shape[-1] <= season:
        raise ValueError(
            f"naive_scale: history has {history.shape[-1]} steps along its last dim; it needs more "
            f"than season={season} to form one naive forecast."
        )
    return (history[..., season:] - history[..., :-season]).abs().mean()


def mase(pred: Tensor, target: Tensor, scale: float | Tensor) -> Tensor:
    """MAE of the forecast divided by `scale`, the naive forecast's in-sample MAE (`naive_scale`)."""
    _check_same_shape(pred, target, "mase")
    scale_t = torch.as_tensor(scale, dtype=pred.dtype, device=pred.device)
    if not bool((scale_t > 0).all()):
        raise ValueError(
            f"mase: scale must be > 0, got {scale!r}; a constant history has a zero naive error, "
            "so MASE is undefined for it (report MAE instead)."
        )
    return (pred - target).abs().mean() / scale_t
