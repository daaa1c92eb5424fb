"""Training forecasters: batches of past windows in, the next `horizon` values out."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from treadmill.trainer import Trainer

__all__ = ["ForecastTrainer"]


class ForecastTrainer(Trainer):
    """A Trainer for forecasting batches {"src": (batch, context, features), "tgt": (batch, horizon,
    features), "index": ...}: the model sees only the past window."""

    def _forward_pass(self, batch: Any) -> Tensor:
        return self.model(batch["src"])
