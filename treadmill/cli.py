"""The `treadmill` command line: train | eval | generate | sweep | tasks | plot.

    treadmill train CONFIG.yaml [dotted.key=value ...] [--run-dir DIR]
    treadmill eval RUN_DIR [--split test] [dotted.key=value ...]
    treadmill generate RUN_DIR [TEXT ...] [--set field=value ...] [--attention out.png]
    treadmill sweep CONFIG.yaml key=v1,v2 [key2=a,b ...] [--sweep-dir DIR]
    treadmill tasks
    treadmill plot RUN_DIR [RUN_DIR ...] [--metrics val_loss,loss] [--out curves.png]

Bad input (a missing file, a bad override, an unknown task) ends with a one-paragraph message and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treadmill", description="Train, evaluate and decode sequence models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train from a YAML config")
    train.add_argument("config", help="YAML run config, e.g. examples/g2p.yaml")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.d_model=256")
    train.add_argument("--run-dir", help="where to write the run (default runs/<config name>)")

    evaluate = commands.add_parser("eval", help="evaluate a trained run; prints JSON on its last line")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluation.generation.beam_size=5")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument(
        "--ensemble", action="append", default=[], metavar="OTHER_RUN_DIR",
        help="decode with this run's model too, averaging probabilities (repeatable; same task and tokenizers)",
    )

    generate = commands.add_parser("generate", help="decode inputs with a trained run (one output per input)")
    generate.add_argument("run_dir")
    generate.add_argument("texts", nargs="*", help="inputs; read from stdin, one per line, when none are given")
    generate.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                          help="generation setting, e.g. --set strategy=beam --set beam_size=5")
    generate.add_argument("--attention", metavar="PNG", help="write the attention heatmap of the first input")

    sweep = commands.add_parser("sweep", help="run a grid of overrides and tabulate the results")
    sweep.add_argument("config")
    sweep.add_argument("grid", nargs="+", help="key=v1,v2 (one per swept key) or key=value (fixed)")
    sweep.add_argument("--sweep-dir", help="default runs/sweep-<config name>")

    commands.add_parser("tasks", help="list the built-in tasks with their sizes")

    plot = commands.add_parser("plot", help="overlay training curves of runs")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--metrics", default=None, help="comma-separated metric names (default: losses)")
    plot.add_argument("--out", default="curves.png")
    return parser


def _train(args: argparse.Namespace) -> int:
    from treadmill.runconfig import load_run_config
    from treadmill.runner import train_run

    config = load_run_config(args.config, args.overrides)
    run_dir = Path(args.run_dir or Path("runs") / Path(args.config).stem)
    summary = train_run(config, run_dir)
    if not summary:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(f"Run directory: {run_dir}")
    # The per-epoch history and last train/valid metrics stay in summary.json: on a terminal they bury the result.
    print(json.dumps({k: v for k, v in summary.items() if k not in ("train", "valid", "history")}, default=float))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from treadmill.runner import eval_run

    metrics = eval_run(Path(args.run_dir), args.split, args.overrides, [Path(other) for other in args.ensemble])
    print(json.dumps(metrics, default=float))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from treadmill.generate_cli import generate_lines

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for output in generate_lines(Path(args.run_dir), texts, args.settings, args.attention):
        print(output, flush=True)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from treadmill.sweep import run_sweep

    sweep_dir = Path(args.sweep_dir or Path("runs") / f"sweep-{Path(args.config).stem}")
    rows = run_sweep(Path(args.config), args.grid, sweep_dir)
    failed = sum(row["status"] == "failed" for row in rows)
    print(f"{len(rows)} runs ({failed} failed): {sweep_dir / 'experiments.md'}")
    # The table is written either way; a non-zero exit lets scripts and CI notice failed runs.
    return 1 if failed else 0


def _tasks(args: argparse.Namespace) -> int:
    from treadmill.data.tasks import list_tasks

    for info in list_tasks():
        sizes = ", ".join(f"{k} {v:,}" for k, v in info.sizes.items()) or "(the sizes of your files)"
        print(f"{info.name:20s} {sizes:45s} {info.description}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from treadmill.plots import plot_runs

    metrics = args.metrics.split(",") if args.metrics else None
    out = plot_runs([Path(d) for d in args.run_dirs], metrics=metrics, out=Path(args.out))
    print(f"Wrote {out}")
    return 0


COMMANDS = {"train": _train, "eval": _eval, "generate": _generate, "sweep": _sweep, "tasks": _tasks, "plot": _plot}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments; overrides may come after options (`train cfg.yaml --run-dir d a=b`)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at the first option; collect the dotted
    # overrides that follow it so both orders mean the same run.
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    unknown = [item for item in extra if item not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:
        args.overrides = list(args.overrides) + overrides
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from treadmill.checkpoint import CheckpointError
    from treadmill.config import ConfigError

    args = _parse(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"treadmill {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"treadmill {args.command}: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
