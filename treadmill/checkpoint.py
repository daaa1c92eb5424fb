"""Checkpoints in one place: atomic save and safe load (full training state, or weights only),
and restoring a Trainer from a training state so training continues exactly (weights alone:
`treadmill.training.weights`, re-exported here).

Files are written to a temporary file in the target directory, flushed to disk, then renamed over
the destination, so a crash mid-write never leaves a corrupt checkpoint (the file operations and the
last.pt rotation are in `treadmill.training.rotation`). Loading never unpickles
arbitrary code: `torch.load(weights_only=True)` or safetensors.

A training state (`training_state`) holds everything the next step depends on: weights, optimizer,
scheduler, grad scaler, the position in the epoch, the data seed, the running means, RNG states,
callback states and history. `restore_training_state` puts all of it back.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from treadmill import __version__
from treadmill.sharded_checkpoint import (
    is_sharded_checkpoint,
    load_sharded_into,
    load_sharded_state,
    load_sharded_weights,
    refuse_non_finite_shards,
    save_sharded,
    save_sharded_rotated,
)
from treadmill.training.checks import check_finite_weights
from treadmill.training.history import upgrade_history
from treadmill.training.io_errors import CheckpointError
from treadmill.training.rotation import atomic_save, save_rotated
from treadmill.training.weights import (
    export_state_dict,
    export_weights,
    load_model_weights,
    unwrap_model,
)

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = [
    "CheckpointError",
    "atomic_save",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "load_model_weights",
    "export_weights",
    "export_state_dict",
    "unwrap_model",
    "average_checkpoints",
    "training_state",
    "save_last",
    "save_state",
    "resolve_resume_path",
    "restore_training_state",
    "config_differences",
]


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely (weights_only); refuses files that need arbitrary unpickling."""
    path = Path(path)
    if is_sharded_checkpoint(path):  # an FSDP run's directory: its full weights, gathered here
        return {**load_sharded_state(path, map_location), "model": load_sharded_weights(path)}
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        return {"model": _load_safetensors(path, map_location)}
    if not _is_torch_file(path):  # random bytes make the unpickler fail in arbitrary ways: say what it is
        raise CheckpointError(
            f"{str(path)!r} is not a PyTorch checkpoint, or is corrupted: it does not start like a file "
            "torch.save writes (a zip archive). Point at a last.pt / best.safetensors that training wrote."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Refusing to load {str(path)!r}: it contains Python objects that would need arbitrary "
            "unpickling (code execution), and Treadmill only loads tensors and plain data "
            f"(torch.load weights_only=True). Re-save it as a state dict or safetensors. Detail: {err}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as err:
        raise CheckpointError(f"Checkpoint file {str(path)!r} is unreadable or truncated: {err}") from err
    if not isinstance(state, Mapping):
        raise CheckpointError(f"Checkpoint {str(path)!r} holds a {type(state).__name__}, not a dict of state.")
    return dict(state)


def _is_torch_file(path: Path) -> bool:
    """Whether the file starts like torch.save output: a zip archive, or the legacy format's
    pickled magic number."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head == b"PK\x03\x04" or head == b"\x80\x02\x8a\x0a"


def _load_safetensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"Weights file {str(path)!r} is unreadable or truncated: {err}") from err


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA RNG states, as plain data a weights_only load accepts."""
    version, internal, gauss = random.getstate()
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what capture_rng_state returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def average_checkpoints(paths: Sequence[str | os.PathLike[str]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights in several checkpoints of one model."""
    if not paths:
        raise CheckpointError("average_checkpoints needs at least one checkpoint file.")
    first_path = str(paths[0])
    # Sum in float64 so that averaging many bf16/fp32 checkpoints adds no rounding of its own.
    first = load_checkpoint(paths[0])["model"]
    sums = {k: v.double() if v.is_floating_point() else v.clone() for k, v in first.items()}
    for path in paths[1:]:
        state = load_checkpoint(path)["model"]
        if state.keys() != first.keys():
            differing = sorted(set(state) ^ set(first))
            raise CheckpointError(
                f"Cannot average {str(path)!r} with {first_path!r}: their weights have different names "
                f"({', '.join(differing[:10])}{' ...' if len(differing) > 10 else ''})."
            )
        for key, tensor in state.items():
            if tensor.shape != first[key].shape or tensor.dtype != first[key].dtype:
                raise CheckpointError(
                    f"Cannot average {str(path)!r} with {first_path!r}: weight {key!r} is {tuple(tensor.shape)} "
                    f"{tensor.dtype} there but {tuple(first[key].shape)} {first[key].dtype} in the first file."
                )
            if tensor.is_floating_point():
                sums[key] += tensor.double()
            elif not torch.equal(tensor, first[key]):
                # Integer buffers (counters, index tables) have no meaningful mean.
                raise CheckpointError(
                    f"Cannot average {str(path)!r} with {first_path!r}: the integer buffer {key!r} differs."
                )
    return {k: (v / len(paths)).to(first[k].dtype) if v.is_floating_point() else v for k, v in sums.items()}


# ---------------------------------------------------------------------- training state and exact resume


def training_state(trainer: Trainer, tensors: bool = True) -> dict[str, Any]:
    """The full training state of a trainer: everything needed to continue exactly where it is
    (without the weights and optimizer state when `tensors` is false: a sharded checkpoint holds them)."""
    return {
        "format": "treadmill-training-state",
        "treadmill_version": __version__,
        "world_size": trainer.dist.world_size,
        "strategy": trainer.config.strategy,
        "model": unwrap_model(trainer.model).state_dict() if tensors else None,
        "optimizer": trainer.optimizer.state_dict() if trainer.optimizer is not None and tensors else None,  # None: an evaluation-only trainer
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "epoch": trainer.epoch,
        "batch_in_epoch": trainer.batch_in_epoch,
        "data_seed": trainer.data_seed,
        "running_metrics": trainer._running.state_dict(),
        "global_step": trainer.global_step,
        "skipped_steps": trainer.skipped_steps,
        "rng": capture_rng_state(),
        "callbacks": {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(trainer.callbacks)},
        "history": trainer.history,
        "config": trainer.config.to_dict(),
    }


def _refuse_non_finite(trainer: Trainer, path: Path) -> None:
    # On accelerators the loss is checked only at log steps: weights that went NaN since then must
    # not overwrite a good checkpoint. Every rank checks, so under DDP all raise together.
    if trainer.config.detect_non_finite:
        where = f"step {trainer.global_step} (epoch {trainer.epoch + 1}, batch {trainer.batch_in_epoch})"
        if _sharded(trainer):
            refuse_non_finite_shards(trainer.model, where, path)
        else:
            check_finite_weights(unwrap_model(trainer.model), where, path)


def _sharded(trainer: Trainer) -> bool:
    return bool(getattr(trainer, "sharded", False))


def save_state(trainer: Trainer, path: str | os.PathLike[str], additional_info: Mapping[str, Any] | None = None) -> Path:
    """Write the trainer's full state (and `additional_info`, kept apart under that key) to path
    atomically, refusing non-finite weights (main process only)."""
    _refuse_non_finite(trainer, Path(path))
    if _sharded(trainer):  # every rank writes its shards
        state = training_state(trainer, tensors=False)
        if additional_info:
            state["additional_info"] = dict(additional_info)
        return save_sharded(trainer.model, trainer.optimizer, state, path, trainer.dist.is_main)
    if not trainer.dist.is_main:
        return Path(path)
    state = trainer.state_dict()
    if additional_info:
        state["additional_info"] = dict(additional_info)
    return atomic_save(state, path)


def save_last(trainer: Trainer) -> Path:
    """Write checkpoint_dir/last.pt, keeping `keep_last_checkpoints` older ones as last-1.pt, ..."""
    directory = Path(trainer.config.checkpoint_dir)  # type: ignore[arg-type]
    _refuse_non_finite(trainer, directory / "last.pt")
    # keep_all_checkpoints (pytorch-treadmill): every saved state stays, as last-1.pt, last-2.pt, ...
    keep = sys.maxsize if trainer.config.keep_all_checkpoints else trainer.config.keep_last_checkpoints
    if _sharded(trainer):
        return save_sharded_rotated(trainer.model, trainer.optimizer, training_state(trainer, tensors=False),
                                    directory, keep, trainer.dist.is_main)
    if not trainer.dist.is_main:
        return directory / "last.pt"
    return save_rotated(trainer.state_dict(), directory, keep)


def _rotation_files(directory: Path) -> list[Path]:
    """last.pt, last-1.pt, last-2.pt, ... as they exist, newest first."""
    numbered = sorted((int(p.stem[5:]), p) for p in directory.glob("last-*.pt") if p.stem[5:].isdigit())
    return [p for p in [directory / "last.pt"] if p.exists()] + [p for _, p in numbered]


def _newest_resumable(trainer: Trainer) -> tuple[Path, dict[str, Any]] | None:
    """The newest rotation file that loads as a training state, warning about each one skipped."""
    if not trainer.config.checkpoint_dir:
        raise CheckpointError("resume_from='last' needs TrainingConfig.checkpoint_dir to know where to look.")
    directory = Path(trainer.config.checkpoint_dir)
    skipped: list[str] = []
    for path in _rotation_files(directory):
        try:
            state = _load_state(path, trainer.device)
            if state.get("format") != "treadmill-training-state":
                raise CheckpointError(f"{path} holds model weights only, not a training state.")
        except CheckpointError as err:
            skipped.append(f"skipped {path.name}: {err}")
            continue
        if path.name != "last.pt":
            why = "; ".join(skipped) if skipped else f"{directory / 'last.pt'} is missing"
            warnings.warn(f"resume_from='last': {why}. Resuming from {path}, the newest complete checkpoint.", stacklevel=4)
        return path, state
    if skipped:
        raise CheckpointError(f"resume_from='last': no usable checkpoint in {directory}: {'; '.join(skipped)}")
    warnings.warn(f"resume_from='last': no checkpoint at {directory / 'last.pt'} yet; starting from scratch.", stacklevel=4)
    return None


def resolve_resume_path(trainer: Trainer, resume_from: str | Path) -> Path | None:
    """The checkpoint file for `resume_from`; "last" means the newest loadable of checkpoint_dir/last.pt,
    last-1.pt, ... (None if there is none)."""
    if str(resume_from) == "last":
        found = _newest_resumable(trainer)
        return found[0] if found else None
    path = Path(resume_from)
    if path.is_dir() and not is_sharded_checkpoint(path):
        path = path / "last.pt"
    return path


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of fields whose values differ between two config dicts."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.extend(config_differences(a, b, name + "."))
        elif a != b:
            diffs.append(f"{name}: {a!r} -> {b!r}")
    return diffs


def _load_state(path: Path, device: torch.device) -> dict[str, Any]:
    """A training state to resume: a checkpoint file, or a sharded checkpoint's state.pt (its
    tensors are read later, by each rank, in the shards it needs)."""
    if is_sharded_checkpoint(path):
        return load_sharded_state(path, device)
    return load_checkpoint(path, map_location=device)


def _check_world_size(trainer: Trainer, path: Path, state: Mapping[str, Any]) -> None:
    """A replicated (DDP or single-process) state resumes only at its own world size and into a
    replicated model; a sharded one reshards to any world size, exactly only at its own."""
    saved, now = state.get("world_size"), trainer.dist.world_size
    if not state.get("sharded"):
        if _sharded(trainer):
            raise CheckpointError(
                f"{path} is a training state of a {state.get('strategy', 'ddp')} run (one file with the whole model), "
                "and this run has strategy='fsdp': its optimizer state cannot be sharded on resume. Resume it with "
                "strategy='ddp', or start the FSDP run from its weights (load_model_weights before training)."
            )
        if saved is not None and int(saved) != now:
            raise CheckpointError(
                f"World-size mismatch: {path} was saved by a run of {saved} process(es) (world size {saved}) and "
                f"this run has {now}. Its position in the epoch (batch {state.get('batch_in_epoch', 0)} of each rank's "
                "share of the data) and its global batch size depend on the world size, so it cannot resume exactly. "
                f"Resume with torchrun --nproc_per_node={saved} (times the number of nodes), or load its weights "
                "alone (treadmill.checkpoint.load_model_weights) and start a new run."
            )
    elif saved is not None and int(saved) != now:
        warnings.warn(
            f"Resuming the sharded checkpoint {path} (saved at world size {saved}) at world size {now}: the weights "
            "and optimizer state are resharded exactly, but the data order differs from an uninterrupted run"
            f"{' and the epoch restarts its position counted in the old shards' if state.get('batch_in_epoch') else ''}.",
            stacklevel=4,
        )


def restore_training_state(trainer: Trainer, resume_from: str | Path) -> tuple[int, int]:
    """Load everything into the trainer; returns (epoch, batches already done in that epoch)."""
    if str(resume_from) == "last":
        found = _newest_resumable(trainer)
        if found is None:
            return 0, 0
        path, state = found
    else:
        path = resolve_resume_path(trainer, resume_from)  # type: ignore[assignment]
        state = _load_state(path, trainer.device)  # type: ignore[arg-type]
    if state.get("format") != "treadmill-training-state":
        raise CheckpointError(f"{path} holds model weights only, not a training state; it cannot be resumed from.")
    _check_world_size(trainer, path, state)
    if state.get("sharded"):
        load_sharded_into(trainer.model, trainer.optimizer, path)
    else:
        load_model_weights(trainer.model, state["model"], source=str(path))
        trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scheduler is not None and state.get("scheduler") is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.scaler is not None and state.get("scaler") is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    diffs = config_differences(state.get("config", {}), trainer.config.to_dict())
    if diffs:
        warnings.warn(f"Resuming {path} with a different config: {'; '.join(diffs)}", stacklevel=3)
    saved_callbacks = state.get("callbacks", {})
    for index, callback in enumerate(trainer.callbacks):
        key = f"{index}:{type(callback).__name__}"
        if key in saved_callbacks:
            callback.load_state_dict(saved_callbacks[key])
    trainer.history = upgrade_history(state["history"]) if "history" in state else trainer.history
    trainer.data_seed = int(state.get("data_seed", trainer.data_seed))
    if "running_metrics" in state:
        trainer._running.load_state_dict(state["running_metrics"])
    trainer.global_step = int(state["global_step"])
    trainer.skipped_steps = int(state.get("skipped_steps", 0))
    restore_rng_state(state["rng"])
    restore_extra = getattr(trainer, "restore_extra_state", None)  # a trainer's own state (sequence-level samplers)
    if restore_extra is not None:
        restore_extra(state)
    epoch, done = int(state["epoch"]), int(state.get("batch_in_epoch", 0))
    trainer.epoch, trainer.batch_in_epoch = epoch, done
    return epoch, done
