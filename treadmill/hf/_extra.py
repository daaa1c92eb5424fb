"""Importing the optional `hf` extra (transformers, peft) with an error that names it."""

from __future__ import annotations

import importlib
from types import ModuleType

from treadmill.validation import ConfigError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, feature: str) -> ModuleType:
    """Import `module` (transformers, peft, tokenizers) or raise MissingExtraError naming the `hf` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{feature} needs the Python package {module!r}, which is not installed; "
            "install the extra with: pip install 'treadmill[hf]'"
        ) from err
