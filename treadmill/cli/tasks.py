"""`treadmill tasks [--export TASK DIR] [--set option=value ...]`: the built-in tasks, or one task's splits
written as plain files (train.txt / valid.txt / test.txt, see treadmill.data.tasks.export)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `tasks` subcommand's arguments."""
    parser = commands.add_parser("tasks", help="list the built-in tasks with their sizes, or export one")
    parser.add_argument("--export", nargs=2, metavar=("TASK", "DIR"),
                        help="write TASK's splits as DIR/train.txt, valid.txt, test.txt")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="OPTION=VALUE",
                        help="(--export) a task option, e.g. --set n_train=1000")


def run(args: argparse.Namespace) -> int:
    """One line per task (name, split sizes, description); or the export, one line per file."""
    if args.export:
        return _export(args.export[0], args.export[1], args.options)
    from treadmill.data.tasks import list_tasks

    for info in list_tasks():
        sizes = ", ".join(f"{k} {v:,}" for k, v in info.sizes.items()) or "(the sizes of your files)"
        print(f"{info.name:20s} {sizes:45s} {info.description}")
    return 0


def _export(name: str, directory: str, settings: list[str]) -> int:
    from treadmill.cli.config import RunConfigError, parse_overrides
    from treadmill.data.tasks import get_task
    from treadmill.data.tasks.export import export_task
    from treadmill.validation import ConfigError, DataError

    try:
        task = get_task(name, **parse_overrides(settings))
    except (ConfigError, DataError):
        raise
    except (TypeError, ValueError) as err:  # an option value the task's builder refuses
        raise RunConfigError(f"task {name!r}: {err}") from err
    for split, path in export_task(task, directory).items():
        print(f"{split}: {path} ({path.stat().st_size:,} bytes)")
    return 0
