"""Restore a Trainer from a full training-state checkpoint so training continues exactly."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treadmill.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
)

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["resolve_resume_path", "restore_training_state", "config_differences"]


def resolve_resume_path(trainer: Trainer, resume_from: str | Path) -> Path | None:
    """The checkpoint file for `resume_from`; "last" means checkpoint_dir/last.pt (None if absent)."""
    if str(resume_from) == "last":
        if not trainer.config.checkpoint_dir:
            raise CheckpointError("resume_from='last' needs TrainingConfig.checkpoint_dir to know where to look.")
        path = Path(trainer.config.checkpoint_dir) / "last.pt"
        if not path.exists():
            warnings.warn(f"resume_from='last': no checkpoint at {path} yet; starting from scratch.", stacklevel=3)
            return None
        return path
    path = Path(resume_from)
    if path.is_dir():
        path = path / "last.pt"
    return path


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of fields whose values differ between two config dicts."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.extend(config_differences(a, b, name + "."))
        elif a != b:
            diffs.append(f"{name}: {a!r} -> {b!r}")
    return diffs


def restore_training_state(trainer: Trainer, resume_from: str | Path) -> tuple[int, int]:
    """Load everything into the trainer; returns (epoch, batches already done in that epoch)."""
    path = resolve_resume_path(trainer, resume_from)
    if path is None:
        return 0, 0
    state = load_checkpoint(path, map_location=trainer.device)
    if state.get("format") != "treadmill-training-state":
        raise CheckpointError(f"{path} holds model weights only, not a training state; it cannot be resumed from.")
    load_model_weights(trainer.model, state["model"], source=str(path))
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scheduler is not None and state.get("scheduler") is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.scaler is not None and state.get("scaler") is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    diffs = config_differences(state.get("config", {}), trainer.config.to_dict())
    if diffs:
        warnings.warn(f"Resuming {path} with a different config: {'; '.join(diffs)}", stacklevel=3)
    saved_callbacks = state.get("callbacks", {})
    for index, callback in enumerate(trainer.callbacks):
        key = f"{index}:{type(callback).__name__}"
        if key in saved_callbacks:
            callback.load_state_dict(saved_callbacks[key])
    trainer.history = state.get("history", trainer.history)
    trainer.data_seed = int(state.get("data_seed", trainer.data_seed))
    if "running_metrics" in state:
        trainer._running.load_state_dict(state["running_metrics"])
    trainer.global_step = int(state["global_step"])
    trainer.skipped_steps = int(state.get("skipped_steps", 0))
    restore_rng_state(state["rng"])
    epoch, done = int(state["epoch"]), int(state.get("batch_in_epoch", 0))
    trainer.epoch, trainer.batch_in_epoch = epoch, done
    return epoch, done
