"""onnx-int8: the ONNX graphs of `treadmill.export.onnx` with int8 weights, for onnxruntime on CPU.

Each graph is exported in float32, then `onnxruntime.quantization.quantize_dynamic` turns its
MatMul/Gemm nodes whose second input is a weight into int8 (weights quantized once, activations
quantized per call); attention's activation-by-activation products, embeddings, norms and softmax
stay float32. The files keep the float export's names, so `OnnxSeq2Seq` loads either directory.
Per-tensor scales over the full int8 range by default (`per_channel`, `reduce_range` for CPUs whose
int8 kernels saturate). Needs the `export` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

__all__ = ["export_onnx_int8", "quantize_onnx_file"]


def _require_quantization() -> None:
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as err:
        raise ImportError(f"The onnx-int8 export needs the export extra: pip install 'treadmill[export]' ({err})") from err


def quantize_onnx_file(source: Path, target: Path, per_channel: bool = False, reduce_range: bool = False) -> Path:
    """Write `source` (a float32 ONNX graph) to `target` with its weight MatMul/Gemm nodes in int8."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer warns on the root logger, once per graph, that the graph could be pre-processed;
    # these graphs are already shape-inferred and optimised by the exporter. Silenced for this call only.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(source, target, op_types_to_quantize=["MatMul", "Gemm"], per_channel=per_channel,
                         reduce_range=reduce_range, weight_type=QuantType.QInt8,
                         extra_options={"MatMulConstBOnly": True})  # only products with a weight
    finally:
        root.setLevel(level)
    return target


def export_onnx_int8(model: nn.Module, directory: Path, per_channel: bool = False,
                     reduce_range: bool = False) -> list[Path]:
    """Write the three ONNX graphs of a TransformerSeq2Seq into `directory` with int8 weights."""
    from treadmill.export.onnx import export_onnx

    _require_quantization()
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onnx-float-", dir=directory) as scratch:
        floats = export_onnx(model, Path(scratch))
        return [quantize_onnx_file(path, directory / path.name, per_channel, reduce_range) for path in floats]
