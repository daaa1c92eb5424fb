"""`treadmill tasks`: the built-in tasks with their split sizes at the default options."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `tasks` subcommand's arguments."""
    commands.add_parser("tasks", help="list the built-in tasks with their sizes")


def run(args: argparse.Namespace) -> int:
    """One line per task: name, split sizes, description."""
    from treadmill.data.tasks import list_tasks

    for info in list_tasks():
        sizes = ", ".join(f"{k} {v:,}" for k, v in info.sizes.items()) or "(the sizes of your files)"
        print(f"{info.name:20s} {sizes:45s} {info.description}")
    return 0
