"""Callbacks: the base class and the ones Treadmill ships."""

from treadmill.callbacks.base import Callback, infer_mode
from treadmill.callbacks.early_stopping import EarlyStopping
from treadmill.callbacks.lr_monitor import LearningRateMonitor
from treadmill.callbacks.model_checkpoint import ModelCheckpoint

__all__ = ["Callback", "EarlyStopping", "LearningRateMonitor", "ModelCheckpoint", "infer_mode"]
