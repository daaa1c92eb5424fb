"""Running weighted means kept on the device, so training adds no host sync per step."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["RunningMeans"]


class RunningMeans:
    """Sample- or token-weighted means of named values over an epoch.

    `update(name, value, weight)` adds value*weight; a (numerator, denominator) pair adds both
    as they are (token metrics reporting (correct, total)). `compute()` syncs once.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._weights: dict[str, Any] = {}

    def update(self, name: str, value: Any, weight: Any = 1) -> None:
        """Add one batch's value with its weight (or a (sum, count) pair)."""
        if isinstance(value, tuple) and len(value) == 2:
            total, count = value
        else:
            if isinstance(value, torch.Tensor):
                value = value.detach()
                if value.numel() != 1:
                    value = value.float().mean()
            total, count = value * weight, weight
        if isinstance(total, torch.Tensor):
            total = total.detach().float()
        self._sums[name] = self._sums.get(name, 0.0) + total
        self._weights[name] = self._weights.get(name, 0) + count

    def compute(self) -> dict[str, float]:
        """The weighted mean of every name (NaN where the total weight is zero)."""
        result = {}
        for name, total in self._sums.items():
            weight = float(self._weights[name])
            result[name] = float(total) / weight if weight else float("nan")
        return result

    def reset(self) -> None:
        """Forget everything."""
        self._sums.clear()
        self._weights.clear()
