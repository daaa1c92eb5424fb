"""`from_config`: the callbacks a TrainingConfig asks for without the user writing them."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from treadmill.callbacks.base import Callback
from treadmill.callbacks.early_stopping import EarlyStopping
from treadmill.callbacks.freeze import FreezeModules
from treadmill.callbacks.model_checkpoint import ModelCheckpoint
from treadmill.callbacks.overfit import OverfitReport

if TYPE_CHECKING:
    from treadmill.config import TrainingConfig

__all__ = ["from_config"]


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def from_config(
    config: TrainingConfig,
    user_callbacks: Sequence[Callback] = (),
    *,
    has_val_loader: bool,
    warn: Callable[[str], None] = _warn,
) -> list[Callback]:
    """The callbacks `config` asks for, in order: module freezing, early stopping, overfit report,
    best-model checkpoints."""
    extra: list[Callback] = []
    if config.freeze:
        extra.append(FreezeModules(config.freeze, config.unfreeze_at_step))
    mode = None if config.monitor_mode == "auto" else config.monitor_mode
    # A user's own EarlyStopping replaces the one early_stopping_patience would add.
    user_has_stopper = any(isinstance(cb, EarlyStopping) for cb in user_callbacks)
    if config.early_stopping_patience and not user_has_stopper:
        if not has_val_loader and config.monitor.startswith("val_"):
            warn(f"TrainingConfig.early_stopping_patience is set but the Trainer has no val_dataloader: "
                 f"unless a callback logs {config.monitor!r}, training will not stop early.")
        extra.append(EarlyStopping(config.monitor, config.early_stopping_patience, config.early_stopping_min_delta, mode))
    if config.overfit_batches:
        extra.append(OverfitReport())  # says whether the model memorised the fixed batches
    if config.checkpoint_dir and config.save_best_model and has_val_loader:
        # Model artifacts (weights only) kept apart from the resumable `last` checkpoints.
        name = "best.safetensors" if config.save_top_k == 1 else "best-epoch{epoch:03d}.safetensors"
        extra.append(ModelCheckpoint(str(Path(config.checkpoint_dir) / name), config.monitor, True, mode, save_top_k=config.save_top_k))
    return extra
