"""Validation helpers shared by the model config dataclasses: errors name the field and the fix."""

from __future__ import annotations

from typing import Any

from treadmill.validation import ConfigError, closest_hint

__all__ = ["check_choice", "check_config", "check_positive", "check_dropout", "closest_hint", "config_error"]


def config_error(message: str, field: str) -> ConfigError:
    """The error of a model config value; `field` lets a run config say where it sits (model.n_heads)."""
    return ConfigError(message, field=field)


def check_choice(owner: str, field: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise a ConfigError naming the field when value is not one of choices."""
    if value not in choices:
        names = [c for c in choices if isinstance(c, str)]
        raise config_error(
            f"{owner}.{field}={value!r} is not one of {choices}.{closest_hint(str(value), names)}", field
        )


def check_positive(owner: str, **fields: int) -> None:
    """Raise a ConfigError naming the first field that is not a positive int."""
    for field, value in fields.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise config_error(f"{owner}.{field}={value!r} must be a positive int.", field)


def check_dropout(owner: str, **fields: float) -> None:
    """Raise a ConfigError naming the first dropout field outside [0, 1)."""
    for field, value in fields.items():
        if not 0.0 <= float(value) < 1.0:
            raise config_error(f"{owner}.{field}={value!r} must be in [0, 1).", field)


def check_config(model: str, config: Any, config_cls: type, builder: str) -> None:
    """Raise TypeError naming the builder when a model is given anything but its config object."""
    if not isinstance(config, config_cls):
        raise TypeError(
            f"{model}(config) takes a {config_cls.__name__}, got {type(config).__name__}; build "
            f"from sizes with treadmill.models.{builder}(src_vocab_size, tgt_vocab_size, **fields)."
        )
