"""Crash-safe checkpoint files: write a temp file, fsync, rename; rotate last.pt -> last-1.pt, ...

`save_rotated` orders its file operations so that a complete `last.pt` exists after every one of
them: a process killed at any point (kill -9, power cut after the fsyncs) can always be resumed.
`tests/test_faults.py` kills a save after each operation in turn and resumes.

A writer removes only its own temp files: another process may be writing one beside it. What a
killed writer left is removed by the next holder of the directory's lock
(`treadmill.training.dir_lock`). An I/O failure is a `CheckpointError` naming the file and the
cause (`treadmill.training.io_errors`), with the previous checkpoint left as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from treadmill.training.io_errors import checkpoint_io

__all__ = ["atomic_save", "fsync_directory", "save_rotated", "write_temp"]


def _discard(tmp: str | Path) -> None:
    if os.path.exists(tmp):
        os.remove(tmp)


def write_temp(obj: Any, path: Path) -> str:
    """torch.save obj to a new temp file beside path, flushed and fsynced; returns the temp file."""
    with checkpoint_io(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(obj, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            _discard(tmp)
            raise
    return tmp


def fsync_directory(directory: Path) -> None:
    """Make the renames in directory durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save obj to path atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    tmp = write_temp(obj, path)
    try:
        with checkpoint_io(path):
            os.replace(tmp, path)
            fsync_directory(path.parent)
    except BaseException:
        _discard(tmp)
        raise
    return path


def _duplicate(source: Path, target: Path) -> None:
    """Give target source's content, leaving source in place: a hard link, else a copy; one rename."""
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            os.link(source, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


def save_rotated(obj: Any, directory: Path, keep: int) -> Path:
    """Write obj as directory/last.pt, keeping `keep` files in all (last.pt, last-1.pt, ...)."""
    last = directory / "last.pt"
    # 1. The new state, complete and fsynced, under a temp name: last.pt is untouched so far.
    tmp = write_temp(obj, last)
    try:
        with checkpoint_io(last):
            _rotate_into(tmp, directory, keep)
    except BaseException:
        _discard(tmp)
        raise
    return last


def _move(source: Path, target: Path) -> None:
    """Rename source to target, replacing it; a file and a directory (an FSDP run's sharded
    checkpoint) cannot replace each other, so such a target is removed first."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif source.is_dir() and target.exists():
        target.unlink()
    os.replace(source, target)


def _rotate_into(tmp: str, directory: Path, keep: int) -> None:
    """Steps 2-4 of save_rotated: shift the kept files, then rename tmp over last.pt."""
    last = directory / "last.pt"
    sharded_last = last.is_dir()  # written by an FSDP run: it cannot be hard-linked, nor renamed over
    if (keep > 1 or sharded_last) and last.exists():
        # 2. Shift the older files up one (the oldest is overwritten); last.pt stays. Only indices
        # that exist are visited, so keep may be unbounded (keep_all_checkpoints).
        top = max((int(p.stem[5:]) for p in directory.glob("last-*.pt") if p.stem[5:].isdigit()), default=0)
        for index in range(min(keep - 1, top + 1), 1, -1):
            older = directory / f"last-{index - 1}.pt"
            if older.exists():
                _move(older, directory / f"last-{index}.pt")
        # 3. last-1.pt becomes a second name of the current last.pt, which is not moved (a
        # sharded directory is moved there: a complete state stays under one of the names).
        if sharded_last:
            _move(last, directory / "last-1.pt")
        else:
            _duplicate(last, directory / "last-1.pt")
    # 4. One atomic rename: last.pt is the previous state before it and the new one after.
    os.replace(tmp, last)
    if sharded_last and keep == 1:
        shutil.rmtree(directory / "last-1.pt", ignore_errors=True)
    fsync_directory(directory)
