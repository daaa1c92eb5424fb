"""PNG pictures with matplotlib (Agg, no display needed), for notebooks and `treadmill plot`.

| module | what it draws |
|---|---|
| `plots/curves.py` | training curves of runs: per-step training values (smoothed, raw faint), validation points on the same axes, the LR schedule; several runs overlaid, labelled by their differing config values |
| `plots/attention.py` | attention heatmaps with token names on both axes: one head, or every head of a layer |
| `plots/run_files.py` | reading a run directory's steps.csv, metrics.csv and config.yaml |

Figures are built with `matplotlib.figure.Figure` directly rather than pyplot, so plotting never
touches a global backend or leaks figures in long-running processes; each `*_figure` function
returns the Figure (tests read its lines and labels back) and each `plot_*` writes the PNG.
"""

from treadmill.plots.attention import (
    attention_figure,
    attention_grid_figure,
    plot_attention,
    plot_attention_heads,
)
from treadmill.plots.curves import curves_figure, plot_runs
from treadmill.plots.run_files import read_metrics, read_steps, run_labels

__all__ = [
    "plot_runs", "curves_figure", "plot_attention", "plot_attention_heads", "attention_figure",
    "attention_grid_figure", "read_metrics", "read_steps", "run_labels",
]
