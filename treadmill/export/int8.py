"""int8: dynamic quantization of Linear, LSTM and GRU layers for CPU inference.

Weights are stored as int8 (one scale per tensor); activations are quantized on the fly at each
matmul, so no calibration data is needed. Embeddings, norms and attention arithmetic stay float32.
Works on every model family (TransformerSeq2Seq, RNNSeq2Seq, GPT, Forecaster): the attention
module runs quantized projections whole (see treadmill/nn/attention.py).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

__all__ = ["QUANTIZED_TYPES", "quantize_int8", "save_int8", "load_int8"]

# The layer types replaced by their dynamically quantized versions.
QUANTIZED_TYPES: set[type[nn.Module]] = {nn.Linear, nn.LSTM, nn.GRU}


def _engine() -> None:
    """Pick a quantized engine this CPU has (x86 / fbgemm, else qnnpack on ARM)."""
    supported = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine not in supported or torch.backends.quantized.engine == "none":
        for name in ("x86", "fbgemm", "qnnpack"):
            if name in supported:
                torch.backends.quantized.engine = name
                return


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (float32, eval mode) with its Linear/LSTM/GRU layers dynamically quantized."""
    import warnings

    _engine()
    float_model = copy.deepcopy(model).float().eval()
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the API is what this export uses.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(float_model, QUANTIZED_TYPES, dtype=torch.qint8)


def save_int8(quantized: nn.Module, path: Path) -> Path:
    """Write a quantized model's state dict (packed int8 weights) to `path`."""
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # packed params pickle through TypedStorage, which torch flags
        warnings.simplefilter("ignore", UserWarning)
        torch.save(quantized.state_dict(), path)
    return path


def load_int8(model: nn.Module, path: Path) -> nn.Module:
    """The int8 model saved at `path`, rebuilt over `model` (the float model of the same config)."""
    quantized = quantize_int8(model)
    # weights_only=False: packed quantized parameters are not plain tensors; the file is one this
    # export wrote beside the run, not a download.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        state = torch.load(path, map_location="cpu", weights_only=False)
    quantized.load_state_dict(state)
    return quantized
