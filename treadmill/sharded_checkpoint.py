"""Checkpoints of an FSDP run: torch.distributed.checkpoint (DCP) directories, one shard file per rank.

A sharded checkpoint has the name a single-file checkpoint would have (`last.pt`, `epoch=3.pt`), but
is a directory::

    last.pt/
        .metadata         DCP's index: every tensor's global shape and which file holds which part
        __0_0.distcp      rank 0's shards of the weights and the optimizer state
        __1_0.distcp      rank 1's ...
        state.pt          everything else of the training state (epoch, position, RNG, history, ...)

Every rank writes its own shards (no rank ever holds the whole model), so the directory must be one
that all ranks can write: a shared filesystem when the job spans machines. Like the single-file
checkpoints, a save is atomic: all ranks write into a temporary directory beside the target, and
rank 0 renames it into place only once every rank's part is on disk. DCP reshards on load, so the
checkpoint resumes at another world size, and loads into a single process without any process group.
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from treadmill.distributed import all_gather_objects, barrier, broadcast_object
from treadmill.training.io_errors import CheckpointError, checkpoint_io
from treadmill.training.rotation import fsync_directory

__all__ = ["STATE_FILE", "is_sharded_checkpoint", "save_sharded", "save_sharded_rotated", "load_sharded_state",
           "load_sharded_into", "load_sharded_weights", "export_sharded_weights", "refuse_non_finite_shards"]

STATE_FILE = "state.pt"


def is_sharded_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether path is a sharded (DCP) checkpoint directory written by an FSDP run."""
    path = Path(path)
    return path.is_dir() and (path / ".metadata").is_file()


def _sharded_tensors(model: nn.Module, optimizer: Any) -> dict[str, Any]:
    """The model's and optimizer's state as DCP saves and loads it: each rank's own shards."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    tensors: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        tensors["optimizer"] = get_optimizer_state_dict(model, optimizer)
    return tensors


def _write_into(tmp: Path, model: nn.Module, optimizer: Any, state: Mapping[str, Any], is_main: bool) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(_sharded_tensors(model, optimizer), checkpoint_id=str(tmp))  # a collective; files fsynced
    if is_main:
        with open(tmp / STATE_FILE, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_directory(tmp)


def _temp_dir(path: Path) -> Path:
    # Every rank must write into the same directory: rank 0 names it. The name matches the temp
    # names the directory lock removes after a killed writer (treadmill.training.dir_lock).
    token = broadcast_object(secrets.token_hex(4))
    return path.parent / f".{path.name}.{token}.tmp"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _save_then(path: Path, model: nn.Module, optimizer: Any, state: Mapping[str, Any], is_main: bool, publish: Any) -> Path:
    """Write every rank's part into a temp directory, then let rank 0 `publish(tmp)` it."""
    tmp = _temp_dir(path)
    try:
        with checkpoint_io(path):
            if is_main:
                path.parent.mkdir(parents=True, exist_ok=True)
            barrier()
            _write_into(tmp, model, optimizer, state, is_main)
            barrier()  # every rank's shards are on disk before the checkpoint appears
            if is_main:
                publish(tmp)
                fsync_directory(path.parent)
    finally:
        if is_main and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    barrier()  # no rank reads the checkpoint (or writes the next) before it is in place
    return path


def save_sharded(model: nn.Module, optimizer: Any, state: Mapping[str, Any], path: str | os.PathLike[str],
                 is_main: bool) -> Path:
    """Write a sharded checkpoint at path (every rank calls this; rank 0 writes `state`)."""
    path = Path(path)

    def publish(tmp: Path) -> None:
        old = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        if path.exists():  # a directory cannot be renamed over a non-empty one: move it aside first
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)

    return _save_then(path, model, optimizer, state, is_main, publish)


def _numbered(directory: Path, index: int) -> Path:
    return directory / ("last.pt" if index == 0 else f"last-{index}.pt")


def save_sharded_rotated(model: nn.Module, optimizer: Any, state: Mapping[str, Any], directory: Path,
                         keep: int, is_main: bool) -> Path:
    """Write directory/last.pt as a sharded checkpoint, keeping `keep` in all (last.pt, last-1.pt, ...).

    The older ones move up one name each (last.pt -> last-1.pt) before the new one is renamed to
    last.pt, so at every moment a complete checkpoint exists under one of those names, and
    `resume_from='last'` finds the newest."""
    last = directory / "last.pt"

    def publish(tmp: Path) -> None:
        existing = [i for i in range(0, 1 + max((int(p.stem[5:]) for p in directory.glob("last-*.pt") if p.stem[5:].isdigit()),
                                                    default=0)) if _numbered(directory, i).exists()]
        shift = min(max(keep - 1, 1), max(existing, default=0) + 1)  # the highest name a kept one moves to
        for index in range(shift, 0, -1):
            older = _numbered(directory, index - 1)
            if older.exists():
                _remove(_numbered(directory, index))
                os.replace(older, _numbered(directory, index))
        os.replace(tmp, last)
        for index in range(keep, shift + 1):
            _remove(_numbered(directory, index))

    return _save_then(last, model, optimizer, state, is_main, publish)


def load_sharded_state(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The non-tensor training state of a sharded checkpoint (state.pt), with `sharded: True`."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{str(path)!r} is a sharded checkpoint directory without its {STATE_FILE}: it is "
                              "incomplete (a save was interrupted?) or was not written by Treadmill.")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle is an unreadable file here
        raise CheckpointError(f"The training state {str(file)!r} is unreadable or truncated: {err}") from err
    state["sharded"] = True
    return dict(state)


def load_sharded_into(model: nn.Module, optimizer: Any, path: str | os.PathLike[str]) -> None:
    """Load a sharded checkpoint's weights (and optimizer state, when given) into a model sharded at
    any world size, or a plain one in a single process: DCP reads the parts each rank needs."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    tensors = _sharded_tensors(model, optimizer)
    try:
        with checkpoint_io(Path(path), what="sharded checkpoint"):
            _load(tensors, path)
    except (RuntimeError, ValueError, KeyError, AssertionError) as err:
        raise CheckpointError(f"The sharded checkpoint {str(path)!r} does not fit {type(model).__name__}: {err}") from err
    set_model_state_dict(model, tensors["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, tensors["optimizer"])


def load_sharded_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The full model weights of a sharded checkpoint in this process, without the model: DCP's
    index gives every tensor's shape and dtype."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = dcp.FileSystemReader(str(path)).read_metadata()
    weights = {
        key[len("model."):]: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in metadata.state_dict_metadata.items()
        if key.startswith("model.") and isinstance(meta, TensorStorageMetadata)
    }
    _load({"model": weights}, path)
    return weights


def _load(tensors: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """dcp.load, in a single process when there is no process group (without DCP's warning that
    it assumes so: here that is the intent)."""
    import torch.distributed.checkpoint as dcp

    alone = not (dist.is_available() and dist.is_initialized())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.load(tensors, checkpoint_id=str(path), no_dist=alone)


def export_sharded_weights(model: nn.Module, path: str | os.PathLike[str], is_main: bool) -> Path:
    """Gather an FSDP model's full weights (every rank takes part) and write them as safetensors
    on rank 0."""
    from treadmill.checkpoint import export_state_dict  # treadmill.checkpoint imports this module
    from treadmill.fsdp import full_model_state

    state = full_model_state(model)
    if is_main:
        export_state_dict(state, path)
    return Path(path)


def refuse_non_finite_shards(model: nn.Module, where: str, target: object) -> None:
    """Raise on every rank when any rank's shard of a weight is NaN or inf (so no rank waits in the
    save that the others skip)."""
    from treadmill.fsdp import non_finite_local_tensors
    from treadmill.training.checks import NonFiniteLossError

    bad = sorted({name for names in all_gather_objects(non_finite_local_tensors(model)) for name in names})
    if bad:
        raise NonFiniteLossError(
            f"Weights became non-finite at {where}: {', '.join(map(repr, bad[:10]))}{' ...' if len(bad) > 10 else ''}. "
            f"{target} was not written, so the previous checkpoint is kept. Try a lower learning rate, "
            "warm-up, max_grad_norm, or check the inputs."
        )
