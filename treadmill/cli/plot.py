"""`treadmill plot RUN_DIR [RUN_DIR ...] [--metrics val_loss,loss] [--out curves.png]`: overlay runs' curves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `plot` subcommand's arguments."""
    parser = commands.add_parser("plot", help="overlay training curves of runs")
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names (default: losses)")
    parser.add_argument("--out", default="curves.png")


def run(args: argparse.Namespace) -> int:
    """Write the PNG and say where."""
    from treadmill.plots import plot_runs

    metrics = args.metrics.split(",") if args.metrics else None
    out = plot_runs([Path(d) for d in args.run_dirs], metrics=metrics, out=Path(args.out))
    print(f"Wrote {out}")
    return 0
