"""Small helpers the trainer needs: devices, seeding, moving nested batches, batch sizes."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["resolve_device", "seed_everything", "move_to_device", "batch_size_of", "iter_tensors", "map_batch"]


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for a config value; "auto" picks cuda, then mps, then cpu."""
    if str(device) != "auto":
        resolved = torch.device(device)
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"TrainingConfig.device={str(device)!r} but CUDA is not available here; use 'auto' or 'cpu'.")
        if resolved.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"TrainingConfig.device={str(device)!r} but MPS is not available here; use 'auto' or 'cpu'.")
        return resolved
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) if "LOCAL_RANK" in os.environ else 0)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def map_batch(fn: Callable[[torch.Tensor], Any], batch: Any) -> Any:
    """Apply fn to every tensor in a nested batch (tensor, tuple, list, dict, namedtuple, mixes)."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        mapped = {k: map_batch(fn, v) for k, v in batch.items()}
        return mapped if type(batch) is dict else type(batch)(mapped)  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(map_batch(fn, v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(map_batch(fn, v) for v in batch)
    return batch


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a nested batch to the device (non-blocking from pinned memory)."""
    if device.type == "cpu":
        return map_batch(lambda t: t if t.device.type == "cpu" else t.cpu(), batch)
    return map_batch(lambda t: t.to(device, non_blocking=True), batch)


def iter_tensors(batch: Any, path: str = "batch") -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (path, tensor) for every tensor in a nested batch, e.g. ("batch['target']", t)."""
    if isinstance(batch, torch.Tensor):
        yield path, batch
    elif isinstance(batch, Mapping):
        for key, value in batch.items():
            yield from iter_tensors(value, f"{path}[{key!r}]")
    elif isinstance(batch, (list, tuple)):
        for i, value in enumerate(batch):
            yield from iter_tensors(value, f"{path}[{i}]")


def batch_size_of(batch: Any) -> int:
    """The number of samples in a batch: dim 0 of its first tensor (1 if it holds none)."""
    for _, tensor in iter_tensors(batch):
        if tensor.ndim > 0:
            return int(tensor.shape[0])
    return 1


def __getattr__(name: str) -> Any:
    """pytorch-treadmill's helpers, from where that package users import them (`treadmill.utils`)."""
    if name in ("format_time", "format_metrics", "format_number", "print_model_summary", "set_color_theme", "COLORS"):
        from treadmill.training import display

        return getattr(display, name)
    if name == "create_experiment_dir":
        from treadmill.training.experiment_dir import create_experiment_dir

        return create_experiment_dir
    raise AttributeError(f"module 'treadmill.utils' has no attribute {name!r}")
