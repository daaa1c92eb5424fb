"""The `treadmill` command line: the application layer over the library.

    treadmill train CONFIG.yaml [dotted.key=value ...] [--run-dir DIR]
    treadmill validate CONFIG.yaml [dotted.key=value ...]
    treadmill eval RUN_DIR [--split test] [dotted.key=value ...] [--ensemble OTHER_RUN_DIR]
    treadmill generate RUN_DIR [TEXT ...] [--set field=value ...] [--attention out.png]
    treadmill sweep CONFIG.yaml key=v1,v2 [key2=a,b ...] [--sweep-dir DIR]
    treadmill tasks [--export TASK DIR]
    treadmill prepare CONFIG.yaml [dotted.key=value ...] [--force]
    treadmill plot RUN_DIR [RUN_DIR ...] [--metrics val_loss,loss] [--out curves.png]
    treadmill export RUN_DIR --format int8|fp16|onnx|onnx-int8 | --merge-lora [--out DIR]
    treadmill serve RUN_DIR [--host 127.0.0.1] [--port 7860] [--export FORMAT]

One module per command, each with `add_parser(commands)` and `run(args) -> exit code`, over
`config.py` (the typed run config), `build.py` (task, model, loaders, trainer) and `run_dir.py`
(the run directory's files, weight selection, loading a finished run). Library code never imports
this package. Bad input (a missing file, a bad override, an unknown task) ends with a one-paragraph
message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

__all__ = ["main"]

# command -> the module that implements it (imported only when that command runs)
COMMANDS = {
    "train": "train",
    "validate": "validate",
    "eval": "evaluate",
    "generate": "generate",
    "sweep": "sweep",
    "tasks": "tasks",
    "plot": "plot",
    "prepare": "prepare",
    "export": "export",
    "serve": "serve",
}


def _module(command: str) -> ModuleType:
    return importlib.import_module(f"treadmill.cli.{COMMANDS[command]}")


def _parser(command: str | None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported to describe its arguments (all for --help)."""
    parser = argparse.ArgumentParser(prog="treadmill", description="Train, evaluate and decode sequence models.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        if command in (None, name):
            _module(name).add_parser(commands)
        else:
            commands.add_parser(name)  # listed, described when chosen
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments; overrides may come after options (`train cfg.yaml --run-dir d a=b`)."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), None)
    parser = _parser(command)
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at the first option; collect the dotted
    # overrides that follow it so both orders mean the same run.
    if hasattr(args, "texts"):  # generate's inputs may follow its options too
        args.texts = list(args.texts) + [item for item in extra if not item.startswith("-")]
        extra = [item for item in extra if item.startswith("-")]
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    unknown = [item for item in extra if item not in overrides]
    # the command's list of key=value items: a run's overrides, or a sweep's grid
    target = next((name for name in ("overrides", "grid") if hasattr(args, name)), None)
    if unknown or (overrides and target is None):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:
        setattr(args, target, list(getattr(args, target)) + overrides)  # type: ignore[arg-type]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parse(argv)
    try:
        return _module(args.command).run(args)
    except KeyboardInterrupt:
        print(f"treadmill {args.command}: interrupted.", file=sys.stderr)
        return 130
    except Exception as err:
        message = input_error_message(err)
        if message is None:
            raise  # a fault of Treadmill, not of the input: the traceback is what a bug report needs
        print(f"treadmill {args.command}: error: {message}", file=sys.stderr)
        return 2


def input_error_message(err: BaseException) -> str | None:
    """The one-paragraph message for an error caused by the input (config, data, files, disk), or None."""
    from treadmill.checkpoint import CheckpointError
    from treadmill.training.io_errors import describe_os_error
    from treadmill.validation import ConfigError, DataError

    if isinstance(err, (ConfigError, CheckpointError, DataError, FileNotFoundError)):
        return str(err)
    if isinstance(err, OSError):
        where = f" {err.filename!r}" if err.filename else ""
        return f"cannot use{where}: {describe_os_error(err)}." if where else f"{describe_os_error(err)}: {err}"
    if isinstance(err, UnicodeError):
        return f"text that is not valid UTF-8 ({err}). Treadmill reads configs, data and inputs as UTF-8."
    return None
