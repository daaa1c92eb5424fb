"""`treadmill plot RUN_DIR [RUN_DIR ...] [--metrics loss,exact_match] [--x step|time] [--out PNG]`, or
`treadmill plot RUN_DIR --embeddings pca|tsne [--out PNG]` (treadmill.plots.embeddings).

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
    parser.add_argument("--embeddings", choices=("pca", "tsne"), default=None,
                        help="instead of curves: the run's token embeddings in 2-D with token labels (tsne needs scikit-learn)")


def run(args: argparse.Namespace) -> int:
    """Write the PNG and say where."""
    if args.embeddings:
        return _embeddings(args)
    from treadmill.plots import plot_runs

    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None
    try:
        out = plot_runs([Path(d) for d in args.run_dirs], metrics=metrics, out=args.out, x=args.x)
    except ValueError as err:  # unknown metric, a run without elapsed_s for --x time
        raise RunConfigError(f"`treadmill plot`: {err}") from err
    print(f"Wrote {out}")
    return 0


def _embeddings(args: argparse.Namespace) -> int:
    """`--embeddings pca|tsne`: embeddings.png (or --out) of one run's token embeddings."""
    from treadmill.cli.run_dir import load_run
    from treadmill.data.tokenizers import token_names
    from treadmill.plots.embeddings import embedding_weights, plot_embeddings

    if len(args.run_dirs) != 1:
        raise RunConfigError("`treadmill plot --embeddings` draws one run's embeddings; give one RUN_DIR.")
    run_dir = Path(args.run_dirs[0])
    loaded = load_run(run_dir)
    if loaded.tgt_tokenizer is None:
        raise RunConfigError(f"run '{run_dir}' has no tokenizer (a {loaded.kind} run): it has no token embeddings to plot.")
    weights = embedding_weights(loaded.model)
    labels = token_names(loaded.tgt_tokenizer, range(len(weights)))
    out = Path(args.out) if args.out else run_dir / f"embeddings_{args.embeddings}.png"
    try:
        path = plot_embeddings(weights, labels, out, args.embeddings, title=f"{run_dir.name}: token embeddings ({args.embeddings})")
    except ImportError as err:  # t-SNE without scikit-learn
        raise RunConfigError(str(err)) from err
    print(f"Wrote {path}")
    return 0
