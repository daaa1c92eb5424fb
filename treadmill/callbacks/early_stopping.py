"""Stop training when a monitored metric stops improving."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from treadmill.callbacks.base import Callback, infer_mode, missing_monitor_warning

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["EarlyStopping", "is_improvement"]


def is_improvement(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether value beats best by more than min_delta in the given mode."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` validations."""

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str | None = None,
        verbose: bool = False,
    ) -> None:
        if patience < 1:
            raise ValueError(f"EarlyStopping.patience must be >= 1, got {patience}.")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping.min_delta must be >= 0, got {min_delta}.")
        mode = mode or infer_mode(monitor)
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping.mode must be 'min' or 'max', got {mode!r}.")
        self.monitor, self.patience, self.min_delta, self.mode, self.verbose = monitor, patience, min_delta, mode, verbose
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._warned_missing = False

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            warning = missing_monitor_warning("EarlyStopping", self.monitor, metrics)
            if warning and not self._warned_missing:
                trainer.warn(warning)
                self._warned_missing = True
            return
        value = float(metrics[self.monitor])
        if is_improvement(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.should_stop = True
            if self.verbose:
                trainer.print(
                    f"Early stopping at epoch {epoch + 1}: {self.monitor} has not improved for {self.patience} "
                    f"validations (best {self.best:.6g} at epoch {(self.best_epoch or 0) + 1})."
                )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        self.wait, self.stopped_epoch = state.get("wait", 0), state.get("stopped_epoch")
