"""fp16: the model's weights in half precision (half the size of float32 on disk and in memory).

Meant for GPUs; on CPU fp16 matmuls are slow, so this format is for storage and CUDA inference.
Decoding already scores in float32 (the stepper casts logits before the softmax).
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from treadmill.checkpoint import export_weights, load_checkpoint, load_model_weights

__all__ = ["to_fp16", "save_fp16", "load_fp16"]


def to_fp16(model: nn.Module) -> nn.Module:
    """A half-precision copy of `model` in eval mode."""
    return copy.deepcopy(model).half().eval()


def save_fp16(model: nn.Module, path: Path) -> Path:
    """Write a half-precision model's weights as safetensors (tied weights stored once)."""
    return export_weights(model, path)


def load_fp16(model: nn.Module, path: Path) -> nn.Module:
    """The fp16 model saved at `path`, loaded into `model` (the float model of the same config), halved."""
    model = model.half().eval()
    load_model_weights(model, load_checkpoint(path)["model"], source=str(path))
    return model
