"""Running weighted means kept on the device, so training adds no host sync per step."""

from __future__ import annotations

from collections.abc import Callable
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

    def compute(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """The weighted mean of every name (NaN where the total weight is zero).

        With `all_reduce` (a sum over processes) the means are over every process's samples.
        """
        names = sorted(self._sums)
        if not names:
            return {}
        stacked = torch.tensor(
            [[float(self._sums[n]) for n in names], [float(self._weights[n]) for n in names]], dtype=torch.float64
        )
        if all_reduce is not None:
            stacked = all_reduce(stacked)
        return {n: (float(s) / float(w) if float(w) else float("nan")) for n, s, w in zip(names, stacked[0], stacked[1], strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """Sums and weights as plain floats (for checkpoints)."""
        return {"sums": {k: float(v) for k, v in self._sums.items()}, "weights": {k: float(v) for k, v in self._weights.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self._sums, self._weights = dict(state["sums"]), dict(state["weights"])

    def reset(self) -> None:
        """Forget everything."""
        self._sums.clear()
        self._weights.clear()
