"""Treadmill: a PyTorch training framework for sequence models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Trainer",
    "TrainingConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "MetricsTracker",
    "Callback",
    "EarlyStopping",
    "ModelCheckpoint",
    "format_time",
    "format_metrics",
    "set_color_theme",
    "__version__",
]

if TYPE_CHECKING:
    from treadmill.config import OptimizerConfig, SchedulerConfig, TrainingConfig
    from treadmill.trainer import Trainer

# The top-level names are imported on first use so that `import treadmill.nn` or the
# command line's `--help` do not pay for the trainer's imports.
_LAZY = {
    "Trainer": "treadmill.trainer",
    "TrainingConfig": "treadmill.config",
    "OptimizerConfig": "treadmill.config",
    "SchedulerConfig": "treadmill.config",
    # pytorch-treadmill 0.6.5's top-level names
    "MetricsTracker": "treadmill.metrics.tracker",
    "Callback": "treadmill.callbacks.base",
    "EarlyStopping": "treadmill.callbacks.early_stopping",
    "ModelCheckpoint": "treadmill.callbacks.model_checkpoint",
    "format_time": "treadmill.training.display",
    "format_metrics": "treadmill.training.display",
    "set_color_theme": "treadmill.training.display",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'treadmill' has no attribute {name!r}")
