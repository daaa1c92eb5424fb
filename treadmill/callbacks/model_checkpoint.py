"""Save checkpoints named from a template, keeping the best by a monitored metric."""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treadmill.callbacks.base import Callback, infer_mode, missing_monitor_warning
from treadmill.callbacks.early_stopping import is_improvement

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["ModelCheckpoint", "format_checkpoint_path"]


class _Missing:
    """Stands in for a template key that is not a logged metric; formats as 'NA' whatever the spec."""

    def __format__(self, spec: str) -> str:
        return "NA"


class _TemplateFormatter(string.Formatter):
    def __init__(self) -> None:
        self.missing: list[str] = []

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, str) and key not in kwargs:
            self.missing.append(key)
            return _Missing()
        return super().get_value(key, args, kwargs)


def format_checkpoint_path(template: str, values: dict[str, Any]) -> tuple[str, list[str]]:
    """Fill `{epoch:03d}`-style fields from values; returns the path and the unknown keys."""
    formatter = _TemplateFormatter()
    return formatter.format(template, **values), formatter.missing


class ModelCheckpoint(Callback):
    """Save the training state to `filepath` (a template with `{epoch}` and any metric).

    A `.safetensors` path saves the model's weights only (a model artifact); any other suffix
    saves the full, resumable training state.

    With `save_best_only` a file is written only when `monitor` improves and only the `save_top_k`
    best files written by this callback are kept; otherwise every validation epoch is saved.
    `epoch` in the template is 1-based, as users count epochs.
    """

    def __init__(
        self,
        filepath: str = "checkpoints/epoch_{epoch:03d}.pt",
        monitor: str = "val_loss",
        save_best_only: bool = True,
        mode: str | None = None,
        verbose: bool = False,
        save_top_k: int = 1,
    ) -> None:
        mode = mode or infer_mode(monitor)
        if mode not in ("min", "max"):
            raise ValueError(f"ModelCheckpoint.mode must be 'min' or 'max', got {mode!r}.")
        if save_top_k < 1:
            raise ValueError(f"ModelCheckpoint.save_top_k must be >= 1, got {save_top_k}.")
        self.filepath, self.monitor, self.save_best_only = str(filepath), monitor, save_best_only
        self.mode, self.verbose, self.save_top_k = mode, verbose, save_top_k
        self.best: float | None = None
        self.best_path: str | None = None
        self.saved: list[tuple[float, str]] = []  # (monitored value, path) of kept best files
        self._warned_keys = False
        self._warned_missing = False

    def _path_for(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> str:
        values: dict[str, Any] = {**metrics, "epoch": epoch + 1, "step": trainer.global_step}
        path, missing = format_checkpoint_path(self.filepath, values)
        if missing and not self._warned_keys:
            trainer.warn(
                f"ModelCheckpoint: the filename template {self.filepath!r} uses {', '.join(map(repr, missing))}, "
                f"which is not logged; they are written as 'NA'. Available keys: {', '.join(sorted(values))}."
            )
            self._warned_keys = True
        return path

    def _enters_top_k(self, value: float) -> bool:
        if len(self.saved) < self.save_top_k:
            return is_improvement(value, None, self.mode)  # anything but NaN
        worst = self.saved[-1][0]
        return is_improvement(value, worst, self.mode)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            warning = missing_monitor_warning("ModelCheckpoint", self.monitor, metrics)
            if warning and not self._warned_missing:
                # With save_best_only a misspelt monitor would otherwise never save anything.
                trainer.warn(warning + (" Nothing is saved until it is." if self.save_best_only else ""))
                self._warned_missing = True
            if self.save_best_only:
                return  # nothing to compare this epoch
        value = float(metrics.get(self.monitor, float("nan")))
        if self.save_best_only and not self._enters_top_k(value):
            return
        path = self._path_for(trainer, epoch, metrics)
        if path.endswith(".safetensors"):
            trainer.export_weights(path)  # a model artifact: weights only
        else:
            trainer.save_checkpoint(path)  # the full training state, resumable
        if self.save_best_only:
            if is_improvement(value, self.best, self.mode):
                self.best, self.best_path = value, path
            self.saved = [(v, p) for v, p in self.saved if p != path] + [(value, path)]
            self.saved.sort(key=lambda item: item[0], reverse=self.mode == "max")
            kept = {p for _, p in self.saved[: self.save_top_k]}
            for _, stale in self.saved[self.save_top_k :]:
                if trainer.dist.is_main and stale not in kept and Path(stale).exists():
                    shutil.rmtree(stale) if Path(stale).is_dir() else os.remove(stale)  # a directory: FSDP's sharded checkpoint
            self.saved = self.saved[: self.save_top_k]
        if self.verbose:
            trainer.print(f"ModelCheckpoint: saved {path} ({self.monitor}={value:.6g})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_path": self.best_path, "saved": [list(s) for s in self.saved]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_path = state.get("best"), state.get("best_path")
        self.saved = [(float(v), str(p)) for v, p in state.get("saved", [])]
