"""What the default Trainer hooks do with a batch: feed it to the model, find its targets, read a
loss result as (mean loss, weight), and name the metric functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["TARGET_KEYS", "feed_model", "targets_of", "loss_and_weight", "named_metric_fns"]

# Keys of a dict batch that hold targets; the other entries are passed to the model as keywords.
TARGET_KEYS = ("target", "targets", "tgt", "labels", "label", "y")


def feed_model(model: nn.Module, batch: Any) -> Any:
    """Run the model on a batch: tensors go in whole; (inputs, targets) pairs pass inputs;
    dict batches pass every non-target entry as a keyword argument."""
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**{k: v for k, v in batch.items() if k not in TARGET_KEYS})
    if isinstance(batch, (list, tuple)):
        inputs = batch[0]
        if isinstance(inputs, Mapping):
            return model(**inputs)
        if isinstance(inputs, (list, tuple)):
            return model(*inputs)
        return model(inputs)
    raise TypeError(f"Trainer cannot feed a batch of type {type(batch).__name__}; override _forward_pass.")


def targets_of(batch: Any) -> Any:
    """The targets inside a batch: the second item of a pair, or a target key of a dict."""
    if isinstance(batch, Mapping):
        for key in TARGET_KEYS:
            if key in batch:
                return batch[key]
        return None
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[1]
    return None


def loss_and_weight(result: Any) -> tuple[torch.Tensor, torch.Tensor | int | None]:
    """Split a loss result into (mean loss, weight); the weight is the token count when reported."""
    if isinstance(result, torch.Tensor):
        return result, None
    if hasattr(result, "loss") and hasattr(result, "n_tokens"):
        return result.loss, result.n_tokens
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1]
    raise TypeError(
        f"_compute_loss must return a tensor, (loss, weight) or an object with .loss and .n_tokens; got {type(result).__name__}."
    )


def named_metric_fns(
    metric_fns: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]] | None,
) -> dict[str, Callable[..., Any]]:
    """Metric functions by name; a sequence is named by each function's __name__."""
    if metric_fns is None:
        return {}
    if not isinstance(metric_fns, Mapping):
        return {getattr(fn, "__name__", f"metric_{i}"): fn for i, fn in enumerate(metric_fns)}
    return dict(metric_fns)
