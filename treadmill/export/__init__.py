"""Exported models: int8 (dynamic quantization, CPU), fp16 (half weights), onnx and onnx-int8 (onnxruntime).

    export_model(model, "int8", RUN_DIR / "export" / "int8")  -> the record written to export.json
    load_exported(model, RUN_DIR / "export" / "int8")        -> a module the searches decode with

Each export directory holds its files and export.json: the format, the files, their size in bytes
and the float32 model's size for comparison. `load_exported` takes the float model of the run's
config (built, weights not needed) to rebuild the structure the files fill.

    format  files                                   runs on               eval  generate  serve
    int8    model.pt (packed int8 state dict)       PyTorch, CPU          yes   yes       yes
    fp16    model.safetensors                       PyTorch (GPU; CPU)    yes   yes       yes
    onnx    encoder/decoder_first/decoder_step.onnx onnxruntime, CPU      no    yes       yes
    onnx-int8  the same three graphs, int8 weights  onnxruntime, CPU      no    yes       yes

The onnx formats cover TransformerSeq2Seq models and decoding only (no teacher-forced loss, no
attention weights); both load as one OnnxSeq2Seq. The heavy imports (onnx, onnxruntime) happen
only for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from treadmill.validation import ConfigError

__all__ = ["FORMATS", "ONNX_FORMATS", "export_dir", "export_model", "load_exported", "read_record", "float32_bytes"]

FORMATS = ("int8", "fp16", "onnx", "onnx-int8")
# The formats onnxruntime runs (OnnxSeq2Seq): decoding only, no loss, no attention weights.
ONNX_FORMATS = ("onnx", "onnx-int8")
RECORD = "export.json"


def export_dir(run_dir: Path, fmt: str) -> Path:
    """Where a run's export in `fmt` lives: RUN_DIR/export/FMT."""
    return Path(run_dir) / "export" / fmt


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")


def float32_bytes(model: nn.Module) -> int:
    """Bytes of the model's saved tensors in float32 (tied weights once; non-persistent tables not counted)."""
    seen: set[int] = set()
    total = 0
    for tensor in model.state_dict().values():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * (4 if tensor.is_floating_point() else tensor.element_size())
    return total


def export_model(model: nn.Module, fmt: str, directory: Path, source: str = "") -> dict[str, Any]:
    """Write `model` in format `fmt` into `directory` with export.json; returns that record."""
    _check_format(fmt)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    if fmt == "int8":
        from treadmill.export.int8 import quantize_int8, save_int8

        paths = [save_int8(quantize_int8(model), directory / "model.pt")]
    elif fmt == "fp16":
        from treadmill.export.fp16 import save_fp16, to_fp16

        paths = [save_fp16(to_fp16(model), directory / "model.safetensors")]
    elif fmt == "onnx":
        from treadmill.export.onnx import export_onnx

        paths = export_onnx(model, directory)
    else:
        from treadmill.export.onnx_int8 import export_onnx_int8

        paths = export_onnx_int8(model, directory)
    record = {
        "format": fmt,
        "model": type(model).__name__,
        "source": source,
        "files": {path.name: path.stat().st_size for path in paths},
        "size_bytes": sum(path.stat().st_size for path in paths),
        "float32_bytes": float32_bytes(model),
        "torch": torch.__version__,
    }
    (directory / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def read_record(directory: Path) -> dict[str, Any]:
    """export.json of an export directory, checked: its files must be there."""
    path = Path(directory) / RECORD
    if not path.is_file():
        raise ConfigError(f"'{directory}' holds no export ({path} is missing). Write one with "
                          f"`treadmill export RUN_DIR --format {Path(directory).name}`.")
    record = json.loads(path.read_text())
    if record.get("format") not in FORMATS:
        raise ConfigError(f"'{path}' names no known export format (one of {', '.join(FORMATS)}).")
    missing = [name for name in record.get("files", {}) if not (Path(directory) / name).is_file()]
    if missing:
        raise ConfigError(f"The export in '{directory}' is missing {', '.join(missing)}; export the run again.")
    return record


def load_exported(model: nn.Module, directory: Path) -> nn.Module:
    """The exported model in `directory`, rebuilt over `model` (the float model of the run's config)."""
    directory = Path(directory)
    record = read_record(directory)
    fmt = record["format"]
    if fmt == "int8":
        from treadmill.export.int8 import load_int8

        return load_int8(model, directory / "model.pt")
    if fmt == "fp16":
        from treadmill.export.fp16 import load_fp16

        return load_fp16(model, directory / "model.safetensors")
    from treadmill.export.onnxruntime_backend import OnnxSeq2Seq

    return OnnxSeq2Seq(directory, len(model.decoder.blocks))  # type: ignore[union-attr, arg-type]
