"""What the Trainer checks about its inputs before and during the first steps, so a mistake in the
user's config, loaders or `_compute_loss` fails at once with the culprit named, not an epoch
later inside torch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from treadmill.config import TrainingConfig
from treadmill.validation import ConfigError, DataError

__all__ = ["as_training_config", "check_loader_not_empty", "check_training_loss", "no_batches_error"]


def as_training_config(config: Any) -> TrainingConfig:
    """The Trainer's config: a TrainingConfig as given, a dict of its fields (checked), or the defaults."""
    if config is None:
        return TrainingConfig()
    if isinstance(config, TrainingConfig):
        return config
    if isinstance(config, Mapping):
        return TrainingConfig(**config)  # unknown keys and bad values are refused by field name
    raise ConfigError(f"Trainer(config=...) must be a TrainingConfig or a dict of its fields, got {type(config).__name__}.")


def check_loader_not_empty(loader: Iterable[Any] | None, name: str) -> None:
    """Refuse a loader whose len() is 0 (a loader without len is checked when it yields nothing)."""
    if loader is None:
        return
    try:
        size = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return
    if size == 0:
        raise no_batches_error(name, "is empty (len 0)")


def no_batches_error(name: str, how: str) -> DataError:
    """The error for a loader that gives no batches."""
    return DataError(
        f"{name} {how}: there is nothing to train or evaluate on. Check the dataset's length, the batch "
        "size with drop_last=True, and any filtering that may have removed every example."
    )


def check_training_loss(loss: Any, where: str) -> None:
    """Refuse a training loss that is not a one-element tensor with a gradient path to the weights."""
    expected = (
        "Trainer._compute_loss (or loss_fn / the model's compute_loss) must return a scalar tensor computed "
        "from the model's outputs, or a (loss, weight) pair"
    )
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{expected}; at {where} it returned a {type(loss).__name__}.")
    if loss.numel() != 1:
        raise ValueError(
            f"{expected}; at {where} the loss has shape {tuple(loss.shape)}. Reduce it (e.g. .mean()) or return "
            "(loss_sum, weight)."
        )
    if not loss.requires_grad:
        raise ValueError(
            f"{expected}; at {where} the loss does not require grad: it was detached (.item(), .detach(), "
            "torch.no_grad, a new tensor) or every parameter is frozen (requires_grad=False), so training "
            "would change nothing."
        )
