"""`treadmill prepare CONFIG [dotted.key=value ...] [--force]`: tokenize a language-modelling task's
text once into token files (uint16/uint32 + meta.json), before training.

`train` prepares them too on first use (and reuses them after); `prepare` does it ahead of time,
for example on a machine with more memory, and `--force` writes them again (after the text or the
tokenizer changed: token files whose recorded sha256 no longer matches the text are refused).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `prepare` subcommand's arguments."""
    parser = commands.add_parser("prepare", help="tokenize a language-modelling task into token files")
    parser.add_argument("config", help="YAML run config of an lm task, e.g. examples/lm_shakespeare.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. task.options.tokenizer=bpe")
    parser.add_argument("--force", action="store_true", help="tokenize again even if token files exist")


def run(args: argparse.Namespace) -> int:
    """Write (or check) the token files; one line per split: tokens, characters, file."""
    from treadmill.cli.config import RunConfigError, load_run_config
    from treadmill.data.tasks import get_task, task_options

    config = load_run_config(args.config, args.overrides)
    if "block_size" not in task_options(config.task.name):
        raise RunConfigError(f"task {config.task.name!r} is not a language-modelling task: `treadmill prepare` tokenizes "
                             "the text of lm-shakespeare or lm-files.")
    task: Any = get_task(config.task.name, **{**config.task.options, "force": args.force})
    meta = task.metadata
    print(f"Token files in {meta['token_dir']} ({meta['dtype']}, {meta['tokenizer']} tokenizer, "
          f"vocabulary {task.tgt_tokenizer.vocab_size:,}):")
    for split, dataset in task.splits.items():
        print(f"  {split}: {meta['tokens'][split]:,} tokens, {meta['chars'][split]:,} characters  {dataset.path}")
    return 0
