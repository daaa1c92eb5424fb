"""PNG plots with matplotlib (Agg, no display needed): training curves of runs, attention heatmaps.

Figures are built with `matplotlib.figure.Figure` directly rather than pyplot, so plotting never
touches a global backend or leaks figures in long-running processes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_runs", "plot_attention", "read_metrics"]

_NOT_METRICS = ("epoch", "step")


def read_metrics(run_dir: str | Path) -> dict[str, list[float]]:
    """The columns of a run's metrics.csv as float lists (empty cells become NaN)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: is {run_dir} a run directory written with CSVLogger (treadmill train)?"
        )
    columns: dict[str, list[float]] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        for name in reader.fieldnames or []:
            columns[name] = []
        for row in reader:
            for name in columns:
                columns[name].append(_to_float(row.get(name)))
    return columns


def _to_float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    """Run names for the legend: the directory name, with its parent when names repeat."""
    names = [d.name or str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{d.parent.name}/{d.name}" for d in run_dirs]
    return names


def plot_runs(
    run_dirs: Sequence[str | Path],
    metrics: Sequence[str] | None = None,
    out: str | Path = "curves.png",
) -> Path:
    """Overlay the per-epoch curves of several runs, one panel per metric; returns the PNG path.

    `metrics` defaults to every column with "loss" in its name (every metric if there is none).
    """
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("plot_runs needs at least one run directory.")
    tables = [read_metrics(d) for d in dirs]
    available = list(dict.fromkeys(k for t in tables for k in t if k not in _NOT_METRICS))
    if metrics is None:
        metrics = [k for k in available if "loss" in k] or available
    unknown = [m for m in metrics if m not in available]
    if unknown or not metrics:
        raise ValueError(
            f"plot_runs: metric(s) {unknown} are in no metrics.csv; available: {', '.join(available)}."
        )
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, metric in zip(axes, metrics, strict=False):
        for label, table in zip(_labels(dirs), tables, strict=True):
            if metric in table:
                epochs = table.get("epoch") or list(range(1, len(table[metric]) + 1))
                ax.plot(epochs, table[metric], marker="o", markersize=3, label=label)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    return _save(fig, out)


def plot_attention(
    weights: Any,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    out: str | Path = "attention.png",
) -> Path:
    """Heatmap of attention weights (tgt_len, src_len): target tokens down, source tokens across."""
    matrix = np.asarray(
        weights.detach().float().cpu() if hasattr(weights, "detach") else weights, dtype=float
    )
    if matrix.ndim != 2 or matrix.shape != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(
            f"plot_attention: weights have shape {tuple(matrix.shape)} but there are {len(tgt_tokens)} target and "
            f"{len(src_tokens)} source tokens; pass weights of shape (tgt_len, src_len) = ({len(tgt_tokens)}, {len(src_tokens)})."
        )
    fig = Figure(
        figsize=(max(4.0, 0.45 * len(src_tokens) + 2), max(3.0, 0.45 * len(tgt_tokens) + 1.5)),
        layout="constrained",
    )
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, aspect="auto")
    ax.set_xticks(range(len(src_tokens)), labels=list(src_tokens), rotation=90)
    ax.set_yticks(range(len(tgt_tokens)), labels=list(tgt_tokens))
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.colorbar(image, ax=ax, label="attention weight")
    return _save(fig, out)


def _save(fig: Figure, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path
