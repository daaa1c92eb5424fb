"""Config values as plain data, and pytorch-treadmill's loose optimizer dicts as OptimizerConfig fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["plain_value", "optimizer_fields"]


def plain_value(value: Any) -> Any:
    """Plain data for a config value: torch's optimizers and schedulers by their short name, other
    classes and functions by their dotted path."""
    if isinstance(value, type):
        name = value.__name__
        for namespace in (torch.optim, torch.optim.lr_scheduler):
            if getattr(namespace, name, None) is value:
                return name
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    if dataclasses.is_dataclass(value):
        return {f.name: plain_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


# Optimizer arguments pytorch-treadmill accepts at the top level of an optimizer dict.
_LOOSE_OPTIMIZER_ARGS = ("momentum", "nesterov", "betas", "eps", "amsgrad")


def optimizer_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """An optimizer dict as OptimizerConfig fields: `{"lr": 0.1, "momentum": 0.9}` puts momentum in params."""
    fields = dict(given)
    loose = {key: fields.pop(key) for key in _LOOSE_OPTIMIZER_ARGS if key in fields}
    if loose:
        fields["params"] = {**loose, **dict(fields.get("params") or {})}
    return fields
