"""`treadmill export RUN_DIR --merge-lora [--out DIR]`: a LoRA run's adapters merged into its weights.

The merging itself is treadmill.cli.merge_lora.export_merged (over treadmill.peft.merge_lora); this
module only parses the command, so the --format exports (int8, fp16, ONNX) can sit beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from treadmill.cli.config import RunConfigError

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `export` subcommand's arguments."""
    parser = commands.add_parser("export", help="export a trained run's weights (--merge-lora: LoRA merged)")
    parser.add_argument("run_dir")
    parser.add_argument("--merge-lora", action="store_true", help="merge the run's LoRA adapters into the weights")
    parser.add_argument("--out", help="(--merge-lora) output directory (default RUN_DIR/export/merged)")


def run(args: argparse.Namespace) -> int:
    """Export; print the output directory as JSON on the last line."""
    from treadmill.cli.merge_lora import default_out, export_merged

    if not args.merge_lora:
        raise RunConfigError("treadmill export: say what to export; --merge-lora merges a LoRA run's adapters.")
    run_dir = Path(args.run_dir)
    out = export_merged(run_dir, Path(args.out) if args.out else default_out(run_dir))
    print(json.dumps({"merged": str(out)}))
    return 0
