"""The checks every config in Treadmill shares: unknown keys with the nearest valid one, and ranges.

Training, model, decoding, task and run configs all report a bad key or value through these
helpers, so each error reads the same way: the field, the value, what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ConfigError", "DataError", "closest_hint", "check_keys", "unknown_key_error", "check_range", "check_type"]


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and the allowed values.

    `field` is the offending field's name where one field is to blame, so an outer layer (the run
    config) can say where it sits (`model.n_heads`).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DataError(ValueError):
    """Bad input data: a file, a line in it, a loader or a batch; the message names which."""


def closest_hint(value: Any, options: Iterable[Any]) -> str:
    """' Did you mean 'x'?' for the closest of `options`, or '' when nothing is close."""
    match = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def unknown_key_error(where: str, key: Any, valid: Iterable[str]) -> ConfigError:
    """The error for a key that `where` (a class or a dotted config path) does not have."""
    valid = list(valid)
    if where and "." not in where and where[:1].isupper():  # a class: TrainingConfig has no field 'x'
        return ConfigError(
            f"{where} has no field {key!r}.{closest_hint(key, valid)} Valid fields: {', '.join(valid)}.",
            field=str(key),
        )
    dotted = f"{where}.{key}" if where else str(key)
    full = [f"{where}.{v}" if where else v for v in valid]
    return ConfigError(
        f"Unknown config key {dotted!r}.{closest_hint(dotted, full)} Valid keys here: {', '.join(valid)}.",
        field=str(key),
    )


def check_keys(where: str, given: Mapping[str, Any] | Iterable[str], valid: Iterable[str]) -> None:
    """Raise `unknown_key_error` for the first key of `given` that is not in `valid`."""
    valid = list(valid)
    for key in given:
        if key not in valid:
            raise unknown_key_error(where, key, valid)


def check_range(
    field: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    optional: bool = False,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise a ConfigError naming `field` unless `value` is a number (an int if `integer`) in range."""
    if optional and value is None:
        return
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if ok:
        return
    bounds = []
    if low is not None:
        bounds.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        bounds.append(f"{'<=' if high_inclusive else '<'} {high:g}")
    allowed = f"{'an integer' if integer else 'a number'}{' ' + ' and '.join(bounds) if bounds else ''}"
    raise ConfigError(
        f"{field} must be {'null or ' if optional else ''}{allowed}, got {value!r}.", field=field.rsplit(".", 1)[-1]
    )


def check_type(field: str, value: Any, kinds: type | tuple[type, ...], allowed: str, optional: bool = False) -> None:
    """Raise a ConfigError naming `field` unless `value` is an instance of `kinds` (bools are not ints)."""
    if optional and value is None:
        return
    wanted = kinds if isinstance(kinds, tuple) else (kinds,)
    ok = isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted)
    if not ok:
        raise ConfigError(
            f"{field} must be {'null or ' if optional else ''}{allowed}, got {value!r} ({type(value).__name__}).",
            field=field.rsplit(".", 1)[-1],
        )
