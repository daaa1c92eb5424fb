"""`treadmill export RUN_DIR --format int8|fp16|onnx|onnx-int8 | --merge-lora`: write the run's model for inference beside it.

The files go to RUN_DIR/export/FORMAT with export.json (format, files, size in bytes, the float32
size); `eval`, `generate` and `serve` load them with `--export FORMAT` (`generate --backend
onnxruntime` is `--export onnx`, or onnx-int8 when given). See docs/serving.md for what each format supports.
`--merge-lora` writes a LoRA run's adapters merged into its weights, as a transformers directory
for loaded models (treadmill.cli.merge_lora; docs/pretrained.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from treadmill.cli.config import RunConfigError
from treadmill.cli.run_dir import add_refit_argument, load_run

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The `export` subcommand's arguments."""
    from treadmill.export import FORMATS

    parser = commands.add_parser("export", help="write a trained run's model as int8, fp16, ONNX or ONNX int8, "
                                                "or LoRA merged")
    parser.add_argument("run_dir")
    parser.add_argument("--format", dest="fmt", choices=FORMATS,
                        help="int8: dynamic quantization (CPU); fp16: half weights; onnx: graphs for onnxruntime; "
                             "onnx-int8: those graphs with int8 weights")
    parser.add_argument("--merge-lora", action="store_true", help="merge the run's LoRA adapters into the weights")
    parser.add_argument("--out", help="(--merge-lora) output directory (default RUN_DIR/export/merged)")
    add_refit_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Export, then print where the files went and their size."""
    from treadmill.export import FORMATS, ONNX_FORMATS, export_dir, export_model

    run_dir = Path(args.run_dir)
    if args.merge_lora == (args.fmt is not None):
        raise RunConfigError(f"give either --format {'|'.join(FORMATS)} or --merge-lora (a LoRA run's "
                             "adapters merged into its weights).")
    if args.merge_lora:
        from treadmill.cli.merge_lora import default_out, export_merged

        out = export_merged(run_dir, Path(args.out) if args.out else default_out(run_dir))
        print(json.dumps({"merged": str(out)}))
        return 0
    loaded = load_run(run_dir, refit_tokenizers=args.refit_tokenizers)
    if args.fmt in ONNX_FORMATS and loaded.kind != "seq2seq":
        raise RunConfigError(f"ONNX export covers encoder-decoder (seq2seq) runs; '{run_dir}' is a {loaded.kind} run.")
    directory = export_dir(run_dir, args.fmt)
    try:
        record = export_model(loaded.model, args.fmt, directory, source=str(run_dir))
    except TypeError as err:  # a model family the format does not cover
        raise RunConfigError(f"`treadmill export --format {args.fmt}` on '{run_dir}': {err}") from err
    except ImportError as err:
        raise RunConfigError(str(err)) from err
    size, base = record["size_bytes"], record["float32_bytes"]
    print(f"Wrote {directory} ({', '.join(record['files'])}): {size / 1e6:.2f} MB, "
          f"{size / base:.2f}x the float32 weights ({base / 1e6:.2f} MB).")
    return 0
