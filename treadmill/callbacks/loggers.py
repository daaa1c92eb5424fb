"""Loggers: CSV (always), TensorBoard, and MLflow when it is installed.

Every logger writes the per-step scalars the trainer sends to `on_log` (loss, lr, grad_norm,
samples/s every `log_frequency` steps, plus `diag/...` from `Diagnostics`) and the epoch metrics
(train and `val_`) at `on_epoch_end`. Hyperparameters are the trainer's config (flattened, dotted
keys) merged with any `hparams` given to the logger.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treadmill.callbacks.base import Callback

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["CSVLogger", "TensorBoardLogger", "MLflowLogger", "flatten_hparams"]


def flatten_hparams(
    values: Mapping[str, Any], prefix: str = ""
) -> dict[str, float | int | str | bool]:
    """Nested config -> {"optimizer.lr": 0.001, ...} with only scalar values (others as text)."""
    flat: dict[str, float | int | str | bool] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def _run_hparams(
    trainer: Trainer, extra: Mapping[str, Any] | None
) -> dict[str, float | int | str | bool]:
    hparams = flatten_hparams(trainer.config.to_dict())
    hparams.update(flatten_hparams(extra or {}))
    return hparams


class _CSVTable:
    """A CSV file whose columns may grow: appends rows, rewrites the file when a new key appears."""

    def __init__(self, path: Path, first_columns: tuple[str, ...]) -> None:
        self.path = path
        self.columns: list[str] = list(first_columns)
        self.rows: list[dict[str, Any]] = []

    def load(self, keep: Any) -> None:
        """Read an existing file, keeping the rows for which keep(row) is true (resume)."""
        self.rows = []
        if self.path.exists():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or self.columns)
                self.rows = [row for row in reader if keep(row)]
        self._rewrite()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        new = [key for key in row if key not in self.columns]
        if new or not self.path.exists():
            self.columns += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow(row)

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)


class CSVLogger(Callback):
    """`metrics.csv` (one row per epoch: epoch, step, every metric) and `steps.csv` (the on_log
    scalars, one row per logged step) in `run_dir`; a resumed run keeps the rows before it.

    Both carry `elapsed_s`, the seconds of training so far (a resumed run continues from the
    time its rows reached, so curves over wall-clock time have no gap or overlap).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.metrics = _CSVTable(self.run_dir / "metrics.csv", ("epoch", "step", "elapsed_s"))
        self.steps = _CSVTable(self.run_dir / "steps.csv", ("step", "epoch", "elapsed_s"))
        self._pending: dict[str, Any] | None = None
        self._started, self._elapsed_before = time.perf_counter(), 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        epoch, step = trainer.epoch, trainer.global_step
        self._started, self._elapsed_before = time.perf_counter(), 0.0
        if step == 0:  # a fresh run replaces old files
            self.metrics.rows, self.steps.rows = [], []
            self.metrics._rewrite()
            self.steps._rewrite()
            return
        self.metrics.load(lambda row: int(row["epoch"]) <= epoch)
        self.steps.load(lambda row: int(row["step"]) <= step)
        times = [_float(row.get("elapsed_s")) for row in self.metrics.rows + self.steps.rows]
        self._elapsed_before = max((t for t in times if t is not None), default=0.0)

    def _elapsed(self) -> float:
        return round(self._elapsed_before + time.perf_counter() - self._started, 3)

    def on_log(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        # Several on_log calls at one step (trainer scalars, diagnostics) share one row.
        if self._pending is not None and self._pending["step"] != trainer.global_step:
            self._flush()
        if self._pending is None:
            self._pending = {"step": trainer.global_step, "epoch": trainer.epoch + 1, "elapsed_s": self._elapsed()}
        self._pending.update(scalars)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._flush()
        self.metrics.add({"epoch": epoch + 1, "step": trainer.global_step, "elapsed_s": self._elapsed(), **metrics})

    def on_train_end(self, trainer: Trainer) -> None:
        self._flush()

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._pending is not None:
            self.steps.add(self._pending)
            self._pending = None


def _float(cell: Any) -> float | None:
    try:
        return float(cell)
    except (TypeError, ValueError):  # an empty cell, or a file written before the column existed
        return None


class TensorBoardLogger(Callback):
    """TensorBoard event files in `run_dir`: `step/<name>` (and `diag/...`) at each on_log,
    `epoch/<metric>` per epoch (x = epoch number), the hyperparameters as text at the start and
    with the final metrics (HParams plugin) at the end."""

    def __init__(self, run_dir: str | Path, hparams: Mapping[str, Any] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # ImportError when tensorboard is missing

        self._writer_class = SummaryWriter
        self.run_dir = Path(run_dir)
        self.hparams = dict(hparams or {})
        self.writer: Any = None
        self._last_metrics: dict[str, float] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        if self.writer is None:
            self.writer = self._writer_class(log_dir=str(self.run_dir))
        table = "\n".join(f"| {k} | {v} |" for k, v in _run_hparams(trainer, self.hparams).items())
        self.writer.add_text(
            "hparams", "| name | value |\n|---|---|\n" + table, global_step=trainer.global_step
        )

    def on_log(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(
                key if "/" in key else f"step/{key}", value, global_step=trainer.global_step
            )

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, global_step=epoch + 1)
        self._last_metrics.update(
            {
                k: float(v)
                for k, v in metrics.items()
                if isinstance(v, (int, float)) and math.isfinite(v)
            }
        )
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self._last_metrics:
            final = {f"hparam/{k}": v for k, v in self._last_metrics.items()}
            self.writer.add_hparams(
                _run_hparams(trainer, self.hparams),
                final,
                run_name=".",
                global_step=trainer.global_step,
            )
        self.close()

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MLflowLogger(Callback):
    """Log params, step scalars and epoch metrics to an MLflow run (needs the `mlflow` package)."""

    def __init__(
        self,
        experiment: str | None = None,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        hparams: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import mlflow
        except ImportError as err:
            raise ImportError(
                "MLflowLogger needs the `mlflow` package, which is not installed: `pip install mlflow`, "
                "or log with CSVLogger / TensorBoardLogger instead."
            ) from err
        self.mlflow = mlflow
        self.experiment, self.run_name, self.tracking_uri = experiment, run_name, tracking_uri
        self.hparams = dict(hparams or {})
        self._active = False

    def on_train_start(self, trainer: Trainer) -> None:
        if self.tracking_uri is not None:
            self.mlflow.set_tracking_uri(self.tracking_uri)
        if self.experiment is not None:
            self.mlflow.set_experiment(self.experiment)
        self.mlflow.start_run(run_name=self.run_name)
        self._active = True
        self.mlflow.log_params({k: str(v) for k, v in _run_hparams(trainer, self.hparams).items()})

    def on_log(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in scalars.items()}, step=trainer.global_step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        numbers = {
            f"epoch/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))
        }
        self.mlflow.log_metrics(numbers, step=epoch + 1)

    def on_train_end(self, trainer: Trainer) -> None:
        self._end("FINISHED")

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        self._end("FAILED")

    def _end(self, status: str) -> None:
        if self._active:
            self.mlflow.end_run(status=status)
            self._active = False
