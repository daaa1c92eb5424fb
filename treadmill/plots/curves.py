"""Training curves of one or more runs: what `treadmill plot RUN [RUN ...]` draws.

    one panel per metric     training values of every logged step (steps.csv): raw and faint,
                             with a lightly smoothed line over them; the validation values of each
                             epoch (metrics.csv) as points on the same axes, so over-fitting shows
                             as the two parting
    a learning-rate panel    the schedule each run followed
    several runs             one colour each, labelled by the config values that differ

The x axis is the optimizer step, or with `x="time"` the seconds of training (`elapsed_s`), for
comparing runs whose steps cost differently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from treadmill.plots.run_files import read_config, read_metrics, read_steps, run_labels

__all__ = ["smooth", "curves_figure", "plot_runs", "default_metrics"]

Axis = Literal["step", "time"]
_X_COLUMNS = {"step": "step", "time": "elapsed_s"}
_NOT_METRICS = ("epoch", "step", "elapsed_s")


def smooth(values: Sequence[float], weight: float = 0.6) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's), NaNs skipped."""
    out = np.full(len(values), np.nan)
    average, count = 0.0, 0
    for i, value in enumerate(values):
        if math.isfinite(value):
            average, count = weight * average + (1 - weight) * value, count + 1
        if count:
            out[i] = average / (1 - weight**count)
    return out


def _base(name: str) -> str:
    return name.removeprefix("val_")


def default_metrics(run_dir: str | Path) -> list[str]:
    """The loss and, when it is another metric, the one the run monitored (its config.yaml)."""
    monitor = str(read_config(run_dir).get("training.monitor") or "val_loss")
    return list(dict.fromkeys(["loss", _base(monitor)]))


class _Run:
    """One run's tables and its x values in both of them."""

    def __init__(self, run_dir: Path, x: Axis) -> None:
        self.dir, self.metrics, self.steps = run_dir, read_metrics(run_dir), read_steps(run_dir)
        column = _X_COLUMNS[x]
        for name, table in (("metrics.csv", self.metrics), ("steps.csv", self.steps)):
            if table and column not in table:
                raise ValueError(
                    f"{run_dir / name} has no {column!r} column, which x={x!r} plots against (runs written "
                    f"before it existed); plot them with x='step'."
                )
        self.step_x = np.asarray(self.steps.get(column, []), dtype=float)
        self.epoch_x = np.asarray(self.metrics.get(column, self.metrics.get("epoch", [])), dtype=float)

    def names(self) -> set[str]:
        """Every plottable metric, by base name (val_loss and loss are both "loss")."""
        return {_base(k) for k in [*self.metrics, *self.steps] if k not in _NOT_METRICS}


def _draw_metric(ax: object, run: _Run, name: str, colour: str, index: int, weight: float) -> None:
    """Training values (per step if logged, else per epoch) and validation points of one run."""
    if name == "lr" and name in run.steps:  # a schedule is exact: nothing to smooth
        ax.plot(run.step_x, run.steps[name], color=colour, linewidth=1.6, gid=f"train:{index}")  # type: ignore[attr-defined]
    elif name in run.steps:
        raw = run.steps[name]
        ax.plot(run.step_x, raw, color=colour, alpha=0.25, linewidth=0.8, gid=f"train-raw:{index}")  # type: ignore[attr-defined]
        ax.plot(run.step_x, smooth(raw, weight), color=colour, linewidth=1.6, gid=f"train:{index}")  # type: ignore[attr-defined]
    elif name in run.metrics:
        ax.plot(run.epoch_x, run.metrics[name], color=colour, linewidth=1.6, marker=".", gid=f"train:{index}")  # type: ignore[attr-defined]
    if f"val_{name}" in run.metrics:
        ax.plot(run.epoch_x, run.metrics[f"val_{name}"], color=colour, linestyle="--", linewidth=1.0,  # type: ignore[attr-defined]
                marker="o", markersize=4, gid=f"valid:{index}")


def _time_scale(runs: Sequence[_Run]) -> tuple[float, str]:
    longest = max((float(np.nanmax(r.step_x)) for r in runs if r.step_x.size), default=0.0)
    if longest > 3 * 3600:
        return 3600.0, "training time (h)"
    if longest > 600:
        return 60.0, "training time (min)"
    return 1.0, "training time (s)"


def curves_figure(run_dirs: Sequence[str | Path], metrics: Sequence[str] | None = None, x: Axis = "step",
                  smoothing: float = 0.6) -> Figure:
    """The curves of the runs as a Figure: a panel per metric (train and validation together) and
    the learning rate. `metrics` default: the loss and the first run's monitored metric."""
    if x not in _X_COLUMNS:
        raise ValueError(f"x must be 'step' or 'time', got {x!r}.")
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run directory.")
    runs = [_Run(Path(d), x) for d in run_dirs]
    available = sorted(set().union(*(r.names() for r in runs)))
    wanted = list(dict.fromkeys(_base(m) for m in (metrics or default_metrics(runs[0].dir))))
    unknown = [m for m in wanted if m not in available]
    if unknown and metrics:
        raise ValueError(f"plot_runs: metric(s) {unknown} are in no run's metrics.csv or steps.csv; "
                         f"available: {', '.join(available)}.")
    wanted = [m for m in wanted if m in available and m != "lr"]
    has_lr = any("lr" in r.steps for r in runs)
    panels = wanted + (["lr"] if has_lr else [])
    if not panels:
        raise ValueError(f"plot_runs: nothing to plot; available: {', '.join(available)}.")
    scale, xlabel = _time_scale(runs) if x == "time" else (1.0, "step")
    for run in runs:  # seconds -> the unit on the axis
        run.step_x, run.epoch_x = run.step_x / scale, run.epoch_x / scale if x == "time" else run.epoch_x
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.8 * cols, 3.4 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for ax, name in zip(axes, panels, strict=False):
        for index, (run, colour) in enumerate(zip(runs, colours, strict=True)):
            _draw_metric(ax, run, name, colour, index, smoothing)
        ax.set_title("learning rate" if name == "lr" else name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if name == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    _legend(fig, run_labels([r.dir for r in runs]), colours)
    return fig


def _legend(fig: Figure, labels: Sequence[str], colours: Sequence[str]) -> None:
    """One legend for the figure: a colour per run, then what the line styles mean."""
    handles = [Line2D([], [], color=c, linewidth=2) for c in colours]
    handles += [Line2D([], [], color="grey", linewidth=1.6), Line2D([], [], color="grey", alpha=0.3),
                Line2D([], [], color="grey", linestyle="--", marker="o", markersize=4)]
    names = [*labels, "train (smoothed)", "train (raw)", "validation"]
    fig.legend(handles, names, loc="outside upper center", ncols=min(len(names), 4), fontsize="small", frameon=False)


def plot_runs(run_dirs: Sequence[str | Path], metrics: Sequence[str] | None = None, out: str | Path | None = None,
              x: Axis = "step", smoothing: float = 0.6) -> Path:
    """Write the runs' curves (see `curves_figure`) as a PNG; `out` defaults to curves.png (or
    curves_time.png) in the first run's directory. Returns the path written."""
    fig = curves_figure(run_dirs, metrics, x, smoothing)
    path = Path(out) if out is not None else Path(run_dirs[0]) / ("curves.png" if x == "step" else "curves_time.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path
