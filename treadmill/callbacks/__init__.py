"""Callbacks: the base class, the ones Treadmill ships, and `from_config` (those a TrainingConfig asks for)."""

from treadmill.callbacks.alarms import ALARM_KINDS, Alarm, AlarmThresholds, HealthMonitor
from treadmill.callbacks.base import Callback, infer_mode
from treadmill.callbacks.compat import (
    GradientClipping,
    LearningRateLogger,
    MetricsLogger,
    WandbLogger,
)
from treadmill.callbacks.configured import from_config
from treadmill.callbacks.diagnostics import Diagnostics
from treadmill.callbacks.early_stopping import EarlyStopping
from treadmill.callbacks.freeze import FreezeModules
from treadmill.callbacks.loggers import CSVLogger, MLflowLogger, TensorBoardLogger
from treadmill.callbacks.lr_monitor import LearningRateMonitor
from treadmill.callbacks.model_checkpoint import ModelCheckpoint
from treadmill.callbacks.overfit import OverfitReport

__all__ = [
    "ALARM_KINDS",
    "Alarm",
    "AlarmThresholds",
    "CSVLogger",
    "Callback",
    "Diagnostics",
    "EarlyStopping",
    "FreezeModules",
    "GradientClipping",
    "LearningRateLogger",
    "MetricsLogger",
    "WandbLogger",
    "HealthMonitor",
    "LearningRateMonitor",
    "MLflowLogger",
    "ModelCheckpoint",
    "OverfitReport",
    "TensorBoardLogger",
    "from_config",
    "infer_mode",
]
