"""Model weights alone: unwrapping DDP/FSDP/compile wrappers, loading a state dict with a named
mismatch (tied and sharded parameters included), and writing safetensors exports atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from treadmill.fsdp import is_fsdp
from treadmill.training.io_errors import CheckpointError, checkpoint_io

__all__ = ["unwrap_model", "load_model_weights", "export_weights", "export_state_dict"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _describe_mismatch(model_state: Mapping[str, torch.Tensor], loaded: Mapping[str, Any]) -> str | None:
    missing = [k for k in model_state if k not in loaded]
    unexpected = [k for k in loaded if k not in model_state]
    mismatched = [
        f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in model_state
        if k in loaded and isinstance(loaded[k], torch.Tensor) and loaded[k].shape != model_state[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return None
    lines = []
    if missing:
        lines.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    if unexpected:
        lines.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
    if mismatched:
        lines.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:20])}")
    return "\n  ".join(lines)


def _fill_tied(model_state: Mapping[str, torch.Tensor], loaded: dict[str, Any]) -> dict[str, Any]:
    """Give tied parameters that a safetensors export stored once their shared value back."""
    by_storage: dict[tuple[int, int], list[str]] = {}
    for key, tensor in model_state.items():
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor  # an FSDP shard: tied ones share it
        if local.numel() == 0 and local is not tensor:  # an empty shard shares nothing
            continue
        by_storage.setdefault((local.untyped_storage().data_ptr(), int(local.storage_offset())), []).append(key)
    for keys in by_storage.values():
        present = [k for k in keys if k in loaded]
        if present:
            for key in keys:
                loaded.setdefault(key, loaded[present[0]])
    return loaded


def load_model_weights(model: nn.Module, state_dict: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Load weights strictly; on mismatch raise listing missing, unexpected and mis-shaped keys."""
    target = unwrap_model(model)
    # Checkpoints written from a DDP-wrapped model in older tools carry a "module." prefix.
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    model_state = target.state_dict()
    state_dict = _fill_tied(model_state, dict(state_dict))
    problem = _describe_mismatch(model_state, state_dict)
    if problem:
        raise CheckpointError(f"The weights in {source} do not fit {type(target).__name__}:\n  {problem}")
    if is_fsdp(target):  # sharded parameters: each rank keeps its part of the full tensors (every rank calls this)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(target, state_dict, options=StateDictOptions(full_state_dict=True))
        return
    target.load_state_dict(state_dict)


def export_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the model's weights as safetensors (atomically); tied weights are stored once."""
    return export_state_dict(unwrap_model(model).state_dict(), path)


def export_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Write a state dict as safetensors (atomically); tied weights are stored once."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    # safetensors refuses shared storage: keep the first name of each tied tensor.
    seen: dict[tuple[int, int], str] = {}
    unique: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        ident = (tensor.untyped_storage().data_ptr(), int(tensor.storage_offset()))
        if ident in seen and tensor.numel() > 0:
            continue
        seen[ident] = key
        unique[key] = tensor.clone()
    path = Path(path)
    tmp = None
    try:
        with checkpoint_io(path, what="weights file"):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            save_file(unique, tmp, metadata={"format": "pt", "tied": ",".join(k for k in state if k not in unique)})
            os.replace(tmp, path)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path
