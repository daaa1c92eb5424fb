"""`treadmill validate CONFIG.yaml [dotted.key=value ...]`: check a run config without running it.

Prints the resolved config (every default filled in) and exits 0, or prints the error and exits 2.
It reads the config exactly as `train` and `sweep` do, builds no task and writes nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `validate` subcommand's arguments."""
    parser = commands.add_parser("validate", help="check a config and print it resolved (writes nothing)")
    parser.add_argument("config", help="YAML run config, e.g. examples/g2p.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.n_heads=8")


def run(args: argparse.Namespace) -> int:
    """Print the resolved config as YAML."""
    from omegaconf import OmegaConf

    from treadmill.cli.config import load_run_config

    config = load_run_config(args.config, args.overrides)
    print(OmegaConf.to_yaml(OmegaConf.create(config.to_dict())), end="")
    return 0
