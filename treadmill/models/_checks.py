"""Validation helpers shared by the model config dataclasses: errors name the field and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_config", "check_positive", "check_dropout", "closest_hint"]


def closest_hint(value: str, options: Iterable[str]) -> str:
    """' Did you mean X?' for the closest option, or '' when nothing is close."""
    match = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def check_choice(owner: str, field: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise ValueError naming the field when value is not one of choices."""
    if value not in choices:
        names = [c for c in choices if isinstance(c, str)]
        raise ValueError(
            f"{owner}.{field}={value!r} is not one of {choices}.{closest_hint(str(value), names)}"
        )


def check_positive(owner: str, **fields: int) -> None:
    """Raise ValueError naming the first field that is not a positive int."""
    for field, value in fields.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{owner}.{field}={value!r} must be a positive int.")


def check_dropout(owner: str, **fields: float) -> None:
    """Raise ValueError naming the first dropout field outside [0, 1)."""
    for field, value in fields.items():
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{owner}.{field}={value!r} must be in [0, 1).")


def check_config(model: str, config: Any, config_cls: type, builder: str) -> None:
    """Raise TypeError naming the builder when a model is given anything but its config object."""
    if not isinstance(config, config_cls):
        raise TypeError(
            f"{model}(config) takes a {config_cls.__name__}, got {type(config).__name__}; build "
            f"from sizes with treadmill.models.{builder}(src_vocab_size, tgt_vocab_size, **fields)."
        )
