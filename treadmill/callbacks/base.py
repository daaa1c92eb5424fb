"""The callback interface: plain objects whose methods the trainer calls at fixed points.

The order of calls during `Trainer.fit()`::

    on_train_start
    for each epoch:
        on_epoch_start
        for each batch:
            on_batch_start
            (forward, loss, backward)
            on_before_optimizer_step   # only on steps that update: gradients are unscaled and
            on_after_optimizer_step    #   averaged over the accumulation group; before clipping
            on_log                     # every `log_frequency` optimizer steps, with scalars
            on_batch_end
        on_validation_start / on_validation_end   # when validation runs this epoch
        on_epoch_end                               # metrics hold train and val_ values
    on_train_end
    (on_exception replaces the rest when an exception escapes)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from treadmill.trainer import Trainer

from treadmill.training.metric_mode import infer_mode

__all__ = ["Callback", "infer_mode", "missing_monitor_warning"]

def missing_monitor_warning(owner: str, monitor: str, metrics: Mapping[str, float]) -> str | None:
    """Why `monitor` is absent from an epoch's metrics, or None when only validation did not run."""
    if monitor in metrics or (monitor.startswith("val_") and not any(k.startswith("val_") for k in metrics)):
        return None
    return f"{owner}: metric {monitor!r} is not logged; available: {', '.join(sorted(metrics))}."


def _written_without_batch(method: Any) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "batch" not in parameters and "batch_idx" in parameters


def _batch_hook_adapter(hook: str, method: Any) -> Any:
    """Our (trainer, batch, batch_idx[, loss]) call turned into pytorch-treadmill's keywords."""

    @functools.wraps(method)
    def on_batch_start(self: Any, trainer: Any, batch: Any, batch_idx: int) -> None:
        method(self, trainer, batch_idx=batch_idx)

    @functools.wraps(method)
    def on_batch_end(self: Any, trainer: Any, batch: Any, batch_idx: int, loss: Any) -> None:
        method(self, trainer, batch_idx=batch_idx, metrics={"loss": float(loss)})

    return on_batch_start if hook == "on_batch_start" else on_batch_end


class Callback:
    """Base class with no-op hooks; override the ones you need.

    Callbacks written for pytorch-treadmill 0.6.5 define `on_batch_start(trainer, batch_idx)` and
    `on_batch_end(trainer, batch_idx, metrics)`; such a subclass is recognised when it is defined
    (its hook has no `batch` parameter) and called that way, with `metrics={"loss": ...}`.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook in ("on_batch_start", "on_batch_end"):
            method = cls.__dict__.get(hook)
            if method is not None and _written_without_batch(method):
                setattr(cls, hook, _batch_hook_adapter(hook, method))

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once after the last epoch or an early stop."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Called at the start of each training epoch (0-based)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch with its train and `val_` metrics."""

    def on_batch_start(self, trainer: Trainer, batch: Any, batch_idx: int) -> None:
        """Called before the forward pass of each training batch."""

    def on_batch_end(self, trainer: Trainer, batch: Any, batch_idx: int, loss: torch.Tensor) -> None:
        """Called after each training batch with its (detached) loss."""

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        """Called when gradients are final for a step, before clipping and the optimizer step."""

    def on_after_optimizer_step(self, trainer: Trainer) -> None:
        """Called right after the optimizer step (and scheduler step)."""

    def on_log(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        """Called every `log_frequency` optimizer steps with loss, lr, grad_norm, samples/s."""

    def on_validation_start(self, trainer: Trainer) -> None:
        """Called before a validation pass."""

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Called after a validation pass with its `val_` metrics."""

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        """Called when an exception escapes the training loop."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in a checkpoint so that resuming continues where it stopped."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
