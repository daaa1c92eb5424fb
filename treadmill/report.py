"""The end-of-training report under pytorch-treadmill's names: `TrainingReport`, `HardwareMonitor`,
`create_training_report_from_trainer`, `display_training_report`, `save_report_to_file`.

`Trainer.fit()` fills `trainer.training_report` (also `trainer.report`) and, when progress output is
on, prints it: a rich panel on a terminal, plain lines (no escape codes) in a log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from treadmill.run_report import RunReport, print_run_report, run_report
from treadmill.training.display import COLORS, format_time
from treadmill.training.hardware import HardwareMonitor

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["HardwareMonitor", "TrainingReport", "create_training_report_from_trainer", "display_training_report",
           "report_lines", "save_report_to_file"]


@dataclass
class TrainingReport:
    """What a finished `fit()` amounts to, field for field as pytorch-treadmill reports it."""

    total_epochs: int = 0
    training_time: float = 0.0
    start_time: datetime | None = None
    end_time: datetime | None = None
    model_name: str = "Unknown"
    total_parameters: int = 0
    trainable_parameters: int = 0
    model_size_mb: float = 0.0
    device: str = "Unknown"
    batch_size: int = 0
    learning_rate: float = 0.0
    optimizer: str = "Unknown"
    scheduler: str | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    metrics_history: dict[str, list[float]] = field(default_factory=dict)
    experiment_dir: str | None = None
    total_checkpoints: int = 0
    best_checkpoint: str | None = None
    total_batches: int = 0
    avg_epoch_time: float = 0.0
    early_stopped: bool = False
    early_stop_epoch: int | None = None
    avg_cpu_percent: float | None = None
    max_cpu_percent: float | None = None
    avg_ram_mb: float | None = None
    max_ram_mb: float | None = None
    avg_gpu_utilization: float | None = None
    max_gpu_utilization: float | None = None
    num_gpus: int = 0
    gpu_memory_used_mb: float | None = None
    gpu_memory_total_mb: float | None = None
    run: RunReport | None = None  # Treadmill's end-of-run report of the same run: what is printed

    def to_dict(self) -> dict[str, Any]:
        """Plain data (times as ISO strings), for JSON."""
        data = dataclasses.asdict(self)
        for key in ("start_time", "end_time"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


def _name(value: Any) -> str:
    return value.__name__ if isinstance(value, type) else str(value)


def create_training_report_from_trainer(trainer: Trainer, start_time: datetime | None = None,
                                        training_time: float | None = None) -> TrainingReport:
    """The report of a trainer after (or during) `fit()`."""
    from treadmill.checkpoint import unwrap_model

    model = unwrap_model(trainer.model)
    history, config = trainer.history, trainer.config
    tensors = [*model.parameters(), *model.buffers()]
    epochs = history["total_epochs"]
    seconds = training_time if training_time is not None else 0.0
    full_history = {key: value for key, value in history.items() if isinstance(value, list) and key != "val_epochs"}
    report = TrainingReport(
        total_epochs=epochs, training_time=seconds, start_time=start_time, end_time=datetime.now().astimezone(),
        model_name=type(model).__name__,
        total_parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        model_size_mb=sum(t.numel() * t.element_size() for t in tensors) / 2**20,
        device=trainer.device.type, batch_size=getattr(trainer.train_dataloader, "batch_size", None) or 0,
        learning_rate=config.optimizer.lr, optimizer=_name(config.optimizer.optimizer_class),
        scheduler=_name(config.scheduler.scheduler_class) if config.scheduler and config.scheduler.scheduler_class else None,
        best_metrics={f"val_{k}": v for k, v in history["best_metrics"].items()},
        final_metrics={key: values[-1] for key, values in full_history.items() if values},
        metrics_history=full_history, total_batches=trainer.global_step * config.gradient_accumulation_steps,
        avg_epoch_time=seconds / epochs if epochs else 0.0,
        early_stopped=bool(trainer.should_stop and epochs < config.epochs),
        early_stop_epoch=epochs if trainer.should_stop and epochs < config.epochs else None,
        **_checkpoints(config.checkpoint_dir),
        **trainer.hardware_monitor.get_summary(),
        run=run_report(trainer, train_seconds=seconds),
    )
    return report


def _checkpoints(directory: str | None) -> dict[str, Any]:
    if not directory or not os.path.isdir(directory):
        return {"experiment_dir": directory}
    files = sorted(p for p in Path(directory).iterdir() if p.suffix in (".pt", ".safetensors"))
    best = next((str(p) for p in files if p.name.startswith("best")), None)
    return {"experiment_dir": directory, "total_checkpoints": len(files), "best_checkpoint": best}


def report_lines(report: TrainingReport) -> list[str]:
    """The report as plain lines."""
    hardware = f"{report.device}" + (f", {report.num_gpus} GPU(s)" if report.num_gpus else "")
    if report.avg_cpu_percent is not None:
        hardware += f", CPU {report.avg_cpu_percent:.0f}% mean / {report.max_cpu_percent:.0f}% peak"
    if report.max_ram_mb is not None:
        hardware += f", RAM {report.max_ram_mb:,.0f} MiB peak"
    lines = [
        "Training report",
        f"  model:        {report.model_name}: {report.total_parameters:,} parameters ({report.trainable_parameters:,} "
        f"trainable), {report.model_size_mb:.2f} MiB",
        f"  training:     {report.total_epochs} epochs in {format_time(report.training_time)} "
        f"({format_time(report.avg_epoch_time)} per epoch){', stopped early' if report.early_stopped else ''}",
        f"  optimizer:    {report.optimizer}, lr {report.learning_rate:g}" + (f", {report.scheduler}" if report.scheduler else ""),
        f"  hardware:     {hardware}",
    ]
    if report.best_metrics:
        lines.append("  best:         " + "  ".join(f"{k} {v:.4f}" for k, v in report.best_metrics.items()))
    if report.final_metrics:
        lines.append("  final:        " + "  ".join(f"{k} {v:.4f}" for k, v in report.final_metrics.items()))
    if report.experiment_dir:
        lines.append(f"  checkpoints:  {report.total_checkpoints} in {report.experiment_dir}"
                     + (f" (best: {report.best_checkpoint})" if report.best_checkpoint else ""))
    return lines


def _hardware_use(report: TrainingReport) -> str | None:
    parts = []
    if report.avg_cpu_percent is not None:
        parts.append(f"CPU {report.avg_cpu_percent:.0f}% mean, {report.max_cpu_percent:.0f}% peak")
    if report.max_ram_mb is not None:
        parts.append(f"RAM {report.max_ram_mb:,.0f} MiB peak")
    if report.gpu_memory_used_mb is not None:
        parts.append(f"GPU memory {report.gpu_memory_used_mb:,.0f} of {report.gpu_memory_total_mb:,.0f} MiB")
    return "Hardware use: " + "; ".join(parts) if parts else None


def display_training_report(report: TrainingReport, file: TextIO | None = None, terminal: bool | None = None) -> None:
    """Print the report: a rich panel on a terminal, plain lines elsewhere (the same end-of-run
    report `treadmill train` prints, with the hardware use under it)."""
    stream = file or sys.stdout
    if report.run is not None:
        print_run_report(report.run, file=stream, terminal=terminal)
        use = _hardware_use(report)
        if use:
            print(use, file=stream, flush=True)
        return
    lines = report_lines(report)  # a report filled by hand, without the trainer
    if not (stream.isatty() if terminal is None else terminal):
        print("\n".join(lines), file=stream, flush=True)
        return
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    body = Text("\n".join(line[2:] for line in lines[1:]))
    Console(file=stream, force_terminal=True, highlight=False).print(
        Panel(body, title=lines[0], title_align="left", border_style=COLORS["success"], expand=False))


def save_report_to_file(report: TrainingReport, filepath: str | os.PathLike[str]) -> None:
    """Write the report as JSON."""
    Path(filepath).write_text(json.dumps(report.to_dict(), indent=2, default=float) + "\n")
