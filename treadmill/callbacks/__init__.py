"""Callbacks: the base class and the ones Treadmill ships."""

from treadmill.callbacks.alarms import ALARM_KINDS, Alarm, AlarmThresholds, HealthMonitor
from treadmill.callbacks.base import Callback, infer_mode
from treadmill.callbacks.diagnostics import Diagnostics
from treadmill.callbacks.early_stopping import EarlyStopping
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
    "HealthMonitor",
    "LearningRateMonitor",
    "MLflowLogger",
    "ModelCheckpoint",
    "OverfitReport",
    "TensorBoardLogger",
    "infer_mode",
]
