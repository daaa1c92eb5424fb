"""`treadmill plot RUN_DIR [RUN_DIR ...] [--metrics loss,exact_match] [--x step|time] [--out PNG]`.

Training curves of runs overlaid (treadmill.plots.curves): per-step training values with the
validation points on the same axes, the learning rate, one colour per run labelled by the config
values that differ. The PNG goes into the first run's directory unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from treadmill.cli.config import RunConfigError

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `plot` subcommand's arguments."""
    parser = commands.add_parser("plot", help="training curves of runs, overlaid")
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metric names, val_ prefix optional (default: loss and the monitored metric)")
    parser.add_argument("--x", choices=("step", "time"), default="step",
                        help="x axis: optimizer steps, or seconds of training (wall-clock comparisons)")
    parser.add_argument("--out", default=None, help="PNG path (default: curves.png in the first run directory)")


def run(args: argparse.Namespace) -> int:
    """Write the PNG and say where."""
    from treadmill.plots import plot_runs

    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None
    try:
        out = plot_runs([Path(d) for d in args.run_dirs], metrics=metrics, out=args.out, x=args.x)
    except ValueError as err:  # unknown metric, a run without elapsed_s for --x time
        raise RunConfigError(f"`treadmill plot`: {err}") from err
    print(f"Wrote {out}")
    return 0
