"""The callbacks pytorch-treadmill 0.6.5 ships, under its names, working as their names say.

`GradientClipping` clips before every optimizer step (after gradients are unscaled and averaged
over the accumulation group); the original clipped after the step had been taken, which changed
nothing. `MetricsLogger` writes the original's CSV (`epoch,<metric>,...`, one row per epoch, 0-based
epochs). `WandbLogger` logs to Weights & Biases, offline when no API key is set.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from treadmill.callbacks.base import Callback

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["GradientClipping", "LearningRateLogger", "MetricsLogger", "WandbLogger"]


class LearningRateLogger(Callback):
    """The learning rate at the start of every epoch (`lr_history`), printed when it changes."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self.lr_history: list[float] = []

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        lr = trainer.optimizer.param_groups[0]["lr"]
        if self.verbose and self.lr_history and lr != self.lr_history[-1]:
            trainer.print(f"Learning rate changed: {self.lr_history[-1]:.2e} -> {lr:.2e} at epoch {epoch}")
        self.lr_history.append(lr)

    def state_dict(self) -> dict[str, Any]:
        return {"lr_history": list(self.lr_history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr_history = list(state["lr_history"])


class GradientClipping(Callback):
    """Clip the gradient norm of all parameters to `max_norm` before each optimizer step."""

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        if not max_norm > 0:
            raise ValueError(f"GradientClipping.max_norm must be > 0, got {max_norm!r}.")
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.last_norm: float | None = None  # the norm before clipping, at the latest step

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        params = [p for group in trainer.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if params:
            self.last_norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_norm, self.norm_type))


class MetricsLogger(Callback):
    """Every epoch's metrics in memory (`metrics_history`) and, with `log_file`, as CSV rows."""

    def __init__(self, log_file: str | os.PathLike[str] | None = None) -> None:
        self.log_file = Path(log_file) if log_file is not None else None
        self.metrics_history: list[dict[str, Any]] = []
        self._columns: list[str] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        row = {"epoch": epoch, **metrics}
        self.metrics_history.append(row)
        if self.log_file is None or not trainer.dist.is_main:
            return
        if self._columns is None:  # the first epoch's metrics fix the columns, as in the original
            self._columns = list(row)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "w", newline="") as handle:
                csv.writer(handle).writerow(self._columns)
        with open(self.log_file, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(column, "") for column in self._columns])

    def state_dict(self) -> dict[str, Any]:
        return {"metrics_history": list(self.metrics_history), "columns": self._columns}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics_history, self._columns = list(state["metrics_history"]), state["columns"]


class WandbLogger(Callback):
    """Epoch metrics (and logged step scalars) to Weights & Biases; offline without WANDB_API_KEY."""

    def __init__(self, project_name: str, epoch_metrics: list[str] | None = None, batch_metrics: list[str] | None = None,
                 local_dir: str | os.PathLike[str] = "wandb", experiment_name_prefix: str = "", offline: bool | None = None) -> None:
        try:
            import wandb
        except ImportError:
            raise ImportError("WandbLogger needs Weights & Biases: pip install wandb (the optional extra 'wandb').") from None
        self._wandb = wandb
        self.project_name, self.local_dir = project_name, Path(local_dir)
        self.epoch_metrics, self.batch_metrics = epoch_metrics, batch_metrics
        self.experiment_name_prefix = experiment_name_prefix
        self.offline = offline if offline is not None else not os.environ.get("WANDB_API_KEY")
        self.run: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        if not trainer.dist.is_main:
            return
        self.local_dir.mkdir(parents=True, exist_ok=True)
        name = f"{self.experiment_name_prefix}{trainer.global_step}" if self.experiment_name_prefix else None
        self.run = self._wandb.init(project=self.project_name, dir=str(self.local_dir), name=name,
                                    mode="offline" if self.offline else "online", config=trainer.config.to_dict())

    def on_log(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        if self.run is not None:
            chosen = {k: v for k, v in scalars.items() if self.batch_metrics is None or k in self.batch_metrics}
            self.run.log({f"batch/{k}": v for k, v in chosen.items()}, step=trainer.global_step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.run is not None:
            chosen = {k: v for k, v in metrics.items() if self.epoch_metrics is None or k in self.epoch_metrics}
            self.run.log({**{f"epoch/{k}": v for k, v in chosen.items()}, "epoch": epoch}, step=trainer.global_step)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
