"""Record the learning rate of every parameter group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from treadmill.callbacks.base import Callback

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["LearningRateMonitor"]


class LearningRateMonitor(Callback):
    """Keep the learning rate per optimizer step (`history`) and add `lr` to the epoch metrics."""

    def __init__(self) -> None:
        self.history: list[list[float]] = []

    def on_after_optimizer_step(self, trainer: Trainer) -> None:
        self.history.append([group["lr"] for group in trainer.optimizer.param_groups])

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        metrics["lr"] = trainer.optimizer.param_groups[0]["lr"]
