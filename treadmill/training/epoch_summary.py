"""What the end of an epoch shows: the few numbers that matter, train next to validation.

Fifteen metrics on one line are read by nobody, so the summary keeps three kinds of row:

    loss            train and validation side by side (over-fitting shows at a glance)
    monitored       the metric early stopping / checkpoints watch, with its best so far and epoch
    headline        the task's own figure (WER for G2P, exact match for copying tasks)

Everything else stays in metrics.csv and TensorBoard. On a terminal the rows become a rich
table (`epoch_table`); in a log they become one plain line (`epoch_line`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SummaryRow", "summary_rows", "best_of", "format_value", "format_duration", "epoch_line", "epoch_table",
           "DEFAULT_HEADLINE"]

# The first of these present among the validation metrics is the headline when the caller names none.
DEFAULT_HEADLINE = ("exact_match", "bleu", "wer", "accuracy", "mase")
# Fractions a reader takes in faster as percentages.
_RATE_NAMES = ("exact_match", "accuracy", "wer", "per")


@dataclass(frozen=True)
class SummaryRow:
    """One metric of the summary: its train and validation values; for the monitored metric the
    best value so far, the (1-based) epoch it came from and whether this epoch set it."""

    name: str
    train: float | None
    valid: float | None
    monitored: bool = False
    best: float | None = None
    best_epoch: int | None = None
    new_best: bool = False


def _base(name: str) -> str:
    return name.removeprefix("val_")


def _epoch_values(history: Mapping[str, Any] | None, monitor: str) -> list[tuple[int, float]]:
    """(epoch, value) of the monitored metric in every recorded epoch that has it."""
    values = history.get(monitor) if history else None
    if not isinstance(values, list):
        return []
    # validation metrics exist only for the epochs that validated (history["val_epochs"])
    epochs = history.get("val_epochs") if monitor.startswith("val_") else None  # type: ignore[union-attr]
    if not isinstance(epochs, list) or len(epochs) != len(values):
        epochs = list(range(1, len(values) + 1))
    return [(epoch, float(value)) for epoch, value in zip(epochs, values, strict=True)
            if isinstance(value, (int, float)) and math.isfinite(value)]


def summary_rows(
    metrics: Mapping[str, float],
    history: Mapping[str, Any] | None,
    monitor: str | None,
    mode: str = "min",
    headline: Sequence[str] = (),
) -> list[SummaryRow]:
    """The summary's rows: loss, the monitored metric (with its best), the headline metrics.

    `history` is the trainer's (`treadmill.training.history`, this epoch included); `headline` names metrics with or without `val_`; empty picks one from
    DEFAULT_HEADLINE.
    """
    chosen = list(headline) or [next((n for n in DEFAULT_HEADLINE if f"val_{n}" in metrics), "")]
    names = ["loss", *([_base(monitor)] if monitor else []), *(_base(n) for n in chosen if n)]
    rows = []
    for name in dict.fromkeys(names):
        train, valid = metrics.get(name), metrics.get(f"val_{name}")
        if train is None and valid is None:
            continue
        row = SummaryRow(name, train, valid)
        if monitor and _base(monitor) == name:
            row = _with_best(row, metrics, history, monitor, mode)
        rows.append(row)
    return rows


def best_of(history: Mapping[str, Any] | None, monitor: str, mode: str = "min") -> tuple[float, int] | None:
    """(best value, its 1-based epoch) of `monitor` over the trainer's history; None if never logged.
    Ties go to the earliest epoch, as EarlyStopping and ModelCheckpoint count improvements."""
    values = _epoch_values(history, monitor)
    if not values:
        return None
    epoch, value = (min if mode == "min" else max)(values, key=lambda item: item[1])
    return value, epoch


def _with_best(row: SummaryRow, metrics: Mapping[str, float], history: Mapping[str, Any] | None,
               monitor: str, mode: str) -> SummaryRow:
    values = _epoch_values(history, monitor)
    current = metrics.get(monitor)
    if not values:  # no history given: this epoch is all there is
        values = [(1, float(current))] if isinstance(current, (int, float)) and math.isfinite(current) else []
    if not values:
        return SummaryRow(row.name, row.train, row.valid, monitored=True)
    pick = min if mode == "min" else max
    best_epoch, best = pick(values, key=lambda item: item[1])  # ties: the earliest epoch (see best_of)
    new_best = current is not None and best_epoch == values[-1][0] and values[-1][1] == current
    return SummaryRow(row.name, row.train, row.valid, True, best, best_epoch, bool(new_best))


def format_value(name: str, value: float | None) -> str:
    """A metric for people: rates as percentages, other values with four decimals."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if _base(name).split("_nostress")[0] in _RATE_NAMES or _base(name).endswith("accuracy"):
        return f"{100 * value:.2f}%"
    return f"{value:.4g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else f"{value:.4f}"


def format_duration(seconds: float) -> str:
    """Seconds as '12.4s' under a minute, m:ss under an hour, h:mm:ss from then on."""
    if seconds < 59.95:
        return f"{max(seconds, 0.0):.1f}s"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _best_text(row: SummaryRow) -> str:
    if row.best is None:
        return ""
    return f"{format_value(row.name, row.best)} @ epoch {row.best_epoch}" + (", new best" if row.new_best else "")


def epoch_line(title: str, rows: Sequence[SummaryRow]) -> str:
    """The summary as one plain line (no escape codes), e.g. for CI logs."""
    parts = []
    for row in rows:
        if row.train is not None and row.valid is not None:
            text = f"{row.name} {format_value(row.name, row.train)} (val {format_value(row.name, row.valid)})"
        elif row.valid is not None:
            text = f"val_{row.name} {format_value(row.name, row.valid)}"
        else:
            text = f"{row.name} {format_value(row.name, row.train)}"
        if row.monitored and row.best is not None:
            text += f" [best {_best_text(row)}]"
        parts.append(text)
    return "  ".join([title, *parts])


def epoch_table(title: str, rows: Sequence[SummaryRow]) -> Any:
    """The summary as a compact rich Table: a row per metric, train and validation side by side."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1),
                  show_edge=False)
    table.add_column("metric")
    table.add_column("train", justify="right")
    table.add_column("valid", justify="right")
    table.add_column("best so far")
    for row in rows:
        best = _best_text(row)
        table.add_row(
            f"{row.name} (monitored)" if row.monitored else row.name,
            format_value(row.name, row.train) if row.train is not None else "",
            format_value(row.name, row.valid) if row.valid is not None else "",
            f"[bold green]{best}[/]" if row.new_best else best,
        )
    return table
