"""Mixed precision: which autocast dtype to use on which device, and the fp16 grad scaler."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

__all__ = ["cpu_has_native_bf16", "resolve_precision", "autocast_context", "make_grad_scaler", "step_optimizer"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX-512 BF16 or AMX)."""
    mkldnn_check = getattr(torch.backends.mkldnn, "is_bf16_supported", None)
    if mkldnn_check is not None:
        return bool(mkldnn_check())
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(requested: str, device: torch.device, force: bool = False) -> str:
    """The precision actually used ("fp32", "bf16" or "fp16"), warning when a request is declined."""
    if requested == "fp32":
        return "fp32"
    if device.type == "cpu":
        if requested == "fp16" and not force:
            warnings.warn(
                "mixed_precision='fp16' is meant for CUDA; on CPU training stays in fp32. "
                "Use 'bf16' on a CPU with native bf16, or set force_mixed_precision=True.",
                stacklevel=3,
            )
            return "fp32"
        if requested == "bf16" and not cpu_has_native_bf16() and not force:
            warnings.warn(
                "mixed_precision='bf16' requested, but this CPU has no native bf16 support, where bf16 "
                "matmuls run far slower than fp32; training stays in fp32. "
                "Set force_mixed_precision=True to use bf16 anyway.",
                stacklevel=3,
            )
            return "fp32"
        return requested
    if device.type == "cuda" and requested == "bf16" and not torch.cuda.is_bf16_supported() and not force:
        warnings.warn("This GPU has no bf16 support; using fp16 with a grad scaler instead.", stacklevel=3)
        return "fp16"
    return requested


def autocast_context(precision: str, device: torch.device) -> Any:
    """An autocast context for the precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (None otherwise: bf16 needs no loss scaling)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def step_optimizer(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> bool:
    """optimizer.step(), through the fp16 grad scaler when there is one; False when the scaler
    skipped the step (inf/NaN gradients: it lowered its scale instead)."""
    if scaler is None:
        optimizer.step()
        return True
    scale_before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() >= scale_before
