"""pytorch-treadmill 0.6.5's Trainer attributes and methods, on our Trainer (docs/compat.md).

Its names map onto ours: `current_epoch` is `epoch`, `stop_training` is `should_stop`, and its
checkpoint keys (`model_state_dict`, `optimizer_state_dict`, ...) are read from and offered on our
training-state files. Loading stays safe: `weights_only`, never arbitrary unpickling.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["PytorchTreadmillMethods", "with_original_keys", "warn_if_overfitting"]

# our training-state key -> the original's
_ORIGINAL_KEYS = {"model": "model_state_dict", "optimizer": "optimizer_state_dict",
                  "scheduler": "scheduler_state_dict", "scaler": "scaler_state_dict"}


def with_original_keys(state: dict[str, Any]) -> dict[str, Any]:
    """A loaded checkpoint with the original's key names beside ours (the same objects, not copies)."""
    out = dict(state)
    for ours, theirs in _ORIGINAL_KEYS.items():
        if ours in state and state[ours] is not None:
            out.setdefault(theirs, state[ours])
        elif theirs in state:
            out.setdefault(ours, state[theirs])
    return out


def warn_if_overfitting(trainer: Trainer, metrics: dict[str, float]) -> None:
    """The original's over-fitting warning: val_loss above loss + overfit_threshold."""
    threshold = trainer.config.overfit_threshold
    if threshold is None or "loss" not in metrics or "val_loss" not in metrics:
        return
    if metrics["val_loss"] > metrics["loss"] + threshold:
        trainer.warn(f"Possible over-fitting at epoch {trainer.epoch + 1}: val_loss {metrics['val_loss']:.4f} > "
                     f"loss {metrics['loss']:.4f} + overfit_threshold {threshold}.")


class PytorchTreadmillMethods:
    """The original Trainer's extra names; mixed into `Trainer`."""

    @property
    def current_epoch(self: Trainer) -> int:  # type: ignore[misc]
        """The epoch in progress (0-based), as pytorch-treadmill names it."""
        return self.epoch

    @current_epoch.setter
    def current_epoch(self: Trainer, value: int) -> None:  # type: ignore[misc]
        self.epoch = value

    @property
    def stop_training(self: Trainer) -> bool:  # type: ignore[misc]
        """Set to True to stop after this step, as pytorch-treadmill names `should_stop`."""
        return self.should_stop

    @stop_training.setter
    def stop_training(self: Trainer, value: bool) -> None:  # type: ignore[misc]
        self.should_stop = value

    @property
    def report(self: Trainer) -> Any:  # type: ignore[misc]
        """The end-of-training report of the last `fit()` (None before one)."""
        return self.training_report

    def _finish_report(self: Trainer, started: float, start_time: Any) -> None:  # type: ignore[misc]
        """Fill `training_report` at the end of fit, and print it when progress output is on."""
        from treadmill.report import create_training_report_from_trainer, display_training_report

        self.hardware_monitor.sample()
        self.training_report = create_training_report_from_trainer(
            self, start_time=start_time, training_time=time.perf_counter() - started)
        if self.print_report and self.config.progress_bar and self.dist.is_main:
            display_training_report(self.training_report)

    def load_checkpoint(self: Trainer, filepath: str | Path, resume_training: bool = True) -> dict[str, Any]:  # type: ignore[misc]
        """Load a checkpoint safely: everything to continue from it (`resume_training`) or only its
        weights; returns its content, with the original's key names too."""
        from treadmill.checkpoint import load_checkpoint, load_model_weights, restore_training_state

        state = with_original_keys(load_checkpoint(filepath, map_location=self.device))
        if resume_training and state.get("format") == "treadmill-training-state":
            restore_training_state(self, filepath)
        else:
            if resume_training:
                warnings.warn(f"{filepath} holds no full training state: only the model weights are loaded.", stacklevel=2)
            load_model_weights(self.model, state["model"], source=str(filepath))
        return state
