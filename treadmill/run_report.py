"""The end-of-run report: model size, time, hardware, the best monitored value, results, weights.

One report for every way a run ends: `treadmill train` prints it after evaluating, and a
library user prints it after `fit()`:

    report = run_report(trainer, results={"test": trainer.evaluate(test_loader)})
    print_run_report(report)        # a rich panel on a terminal, plain lines in a log

`RunReport` is plain data, so other front ends (the pytorch-treadmill drop-in's
`TrainingReport`) can fill and render it their own way.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import torch

from treadmill.training.epoch_summary import best_of, format_duration, format_value, summary_rows
from treadmill.training.history import last_metrics
from treadmill.training.progress import is_terminal

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["RunReport", "run_report", "print_run_report", "report_lines", "results_table"]

# The figures of a split's results, in this order, where the split has them.
RESULT_METRICS = ("loss", "exact_match", "wer", "per", "wer_nostress", "per_nostress", "bleu", "chrf", "mase", "mae")
# Checkpoint files worth naming, in the order a reader wants them.
_WEIGHT_FILES = (("best", "best.safetensors"), ("last", "last.pt"))


@dataclass
class RunReport:
    """What a finished run amounts to (plain data: fill it, render it with `print_run_report`)."""

    model: str
    parameters: int
    trainable_parameters: int
    parameter_bytes: int
    device: str
    precision: str
    epochs: int
    steps: int
    train_seconds: float
    monitor: str | None = None
    best: float | None = None
    best_epoch: int | None = None
    last_epoch: dict[str, float] = field(default_factory=dict)  # loss, monitored and headline values
    results: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metrics
    weights: dict[str, str] = field(default_factory=dict)  # role ("evaluated", "best", "last") -> path
    run_dir: str | None = None


def _device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def _weights(trainer: Trainer, given: Mapping[str, str] | None) -> dict[str, str]:
    weights = dict(given or {})
    directory = trainer.config.checkpoint_dir
    for role, name in _WEIGHT_FILES if directory else ():
        path = Path(directory) / name  # type: ignore[arg-type]
        if path.exists() and str(path) not in weights.values():
            weights[role] = str(path)
    return weights


def run_report(trainer: Trainer, *, train_seconds: float | None = None,
               results: Mapping[str, Mapping[str, float]] | None = None,
               weights: Mapping[str, str] | None = None, run_dir: str | Path | None = None) -> RunReport:
    """The report of a trainer after `fit()`: `train_seconds` defaults to the time its progress
    reporter measured; `weights` (role -> path) adds to the checkpoint files found."""
    from treadmill.checkpoint import unwrap_model

    model = unwrap_model(trainer.model)
    params = list(model.parameters())
    history, monitor = trainer.history, trainer.config.monitor
    best = best_of(history, monitor, trainer.monitor_mode)
    last = {**last_metrics(history, "train"), **last_metrics(history, "val")}
    rows = summary_rows(last, None, monitor, trainer.monitor_mode, trainer.progress.headline)
    return RunReport(
        model=type(model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
        parameter_bytes=sum(p.numel() * p.element_size() for p in params),
        device=_device_text(trainer.device),
        precision=trainer.precision,
        epochs=history["total_epochs"],
        steps=trainer.global_step,
        train_seconds=trainer.progress.elapsed if train_seconds is None else train_seconds,
        monitor=monitor if best else None,
        best=best[0] if best else None,
        best_epoch=best[1] if best else None,
        last_epoch={name: value for row in rows for name, value in
                    ((row.name, row.train), (f"val_{row.name}", row.valid)) if value is not None},
        results={split: dict(metrics) for split, metrics in (results or {}).items()},
        weights=_weights(trainer, weights),
        run_dir=None if run_dir is None else str(run_dir),
    )


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024  # type: ignore[assignment]
    return ""


def _facts(report: RunReport) -> list[tuple[str, str]]:
    """(label, text) pairs, the report's body in reading order."""
    trainable = "" if report.trainable_parameters == report.parameters else f", {report.trainable_parameters:,} trainable"
    rate = f" ({report.steps / report.train_seconds:.1f} steps/s)" if report.train_seconds > 0 and report.steps else ""
    facts = [
        ("model", f"{report.model}: {report.parameters:,} parameters{trainable} ({_size(report.parameter_bytes)})"),
        ("hardware", f"{report.device}, {report.precision}"),
        ("training", f"{report.epochs} epochs, {report.steps:,} steps in {format_duration(report.train_seconds)}{rate}"),
    ]
    if report.monitor and report.best is not None:
        facts.append(("best", f"{report.monitor} {format_value(report.monitor, report.best)} at epoch {report.best_epoch}"))
    if report.last_epoch:
        facts.append(("last epoch", "  ".join(f"{k} {format_value(k, v)}" for k, v in report.last_epoch.items())))
    facts += [("weights", f"{path} ({role})") for role, path in report.weights.items()]
    return facts


def _result_cells(metrics: Mapping[str, float], columns: list[str]) -> list[str]:
    """Rates as percentages with one decimal (as the headlines give them), the rest to 4 digits."""
    rates = ("exact_match", "wer", "per", "wer_nostress", "per_nostress")
    cells = []
    for name in columns:
        value = metrics.get(name)
        cells.append("" if value is None else f"{100 * value:.1f}%" if name in rates else f"{value:.4g}")
    return cells


def _result_columns(results: Mapping[str, Mapping[str, float]]) -> list[str]:
    return [name for name in RESULT_METRICS if any(name in metrics for metrics in results.values())]


def report_lines(report: RunReport) -> list[str]:
    """The report as plain lines (no escape codes), for logs and files."""
    lines = ["Run report"] + [f"  {label + ':':<12} {text}" for label, text in _facts(report)]
    columns = _result_columns(report.results)
    for split, metrics in report.results.items():
        pairs = zip(columns, _result_cells(metrics, columns), strict=True)
        lines.append(f"  {split + ':':<12} " + "  ".join(f"{name} {cell}" for name, cell in pairs if cell))
    if report.run_dir is not None:
        lines.append(f"Run directory: {report.run_dir}")
    return lines


def results_table(results: Mapping[str, Mapping[str, float]]) -> Any:
    """The per-split results as a rich Table, one row per split, the headline figures as columns."""
    from rich.table import Table

    columns = _result_columns(results)
    table = Table(title="Results")
    table.add_column("split")
    for name in columns:
        table.add_column(name, justify="right")
    for split, metrics in results.items():
        table.add_row(split, *_result_cells(metrics, columns))
    return table


def print_run_report(report: RunReport, file: TextIO | None = None, terminal: bool | None = None,
                     width: int | None = None) -> None:
    """Print the report: a rich panel and results table on a terminal, plain lines elsewhere."""
    stream = file or sys.stdout
    if not (is_terminal(stream) if terminal is None else terminal):
        print("\n".join(report_lines(report)), file=stream, flush=True)
        return
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, text in _facts(report):
        grid.add_row(label, text)
    if report.run_dir is not None:
        grid.add_row("run directory", report.run_dir)
    parts: list[Any] = [grid] + ([results_table(report.results)] if report.results else [])
    console = Console(file=stream, force_terminal=True, width=width, highlight=False)
    console.print(Panel(Group(*parts), title="Run report", title_align="left", expand=False))

