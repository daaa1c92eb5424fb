"""One writer per directory: an OS file lock held for a run's life.

Two trainers writing one checkpoint directory (or two `treadmill train` runs into one run
directory) would overwrite each other's checkpoints and mix their logs. `DirectoryLock` takes an
exclusive `flock` on `DIR/.treadmill.lock` and writes its process id there (the file is removed
again when the run ends), so a second writer is
refused at start with the holder named. The kernel drops the lock when its process dies, however
it dies, so the lock of a killed run is simply taken over. A new holder removes the temp files
the previous writer left behind (no other process can be writing them any more).

`flock` is advisory and local: it does not protect a directory on a network file system shared
between machines (see docs/checkpointing.md).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from treadmill.training.io_errors import CheckpointError, check_writable

try:
    import fcntl
except ImportError:  # Windows: no flock; directories are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "DirectoryLock", "DirectoryLockedError", "remove_stale_temps"]

LOCK_NAME = ".treadmill.lock"
# The temp files `treadmill.training.rotation` and `export_weights` write: .last.pt.k3j2x.tmp
_TEMP_NAME = re.compile(r"^\..+\.(pt|safetensors)\.[^.]+\.tmp$")

# Locks this process holds: directory -> (file descriptor, nesting depth). flock conflicts between
# two descriptors even in one process, so a nested claim of the same directory reuses the first.
_HELD: dict[Path, list[int]] = {}


class DirectoryLockedError(CheckpointError):
    """Another live process is writing this directory."""


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete the `.NAME.*.tmp` files a killed writer left in directory; returns them."""
    removed = []
    for stale in directory.glob(".*.tmp"):
        if _TEMP_NAME.match(stale.name):  # only our own checkpoint temp names, never a user's file
            if stale.is_dir() and not stale.is_symlink():  # a sharded (FSDP) checkpoint's temp directory
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    return text or "unknown"


class DirectoryLock:
    """An exclusive lock on `directory` for this process, as a context manager (re-entrant)."""

    def __init__(self, directory: str | os.PathLike[str], purpose: str = "checkpoint directory") -> None:
        self.directory = Path(directory)
        self.purpose = purpose
        self._key: Path | None = None

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.directory / LOCK_NAME

    def acquire(self) -> DirectoryLock:
        """Take the lock (checking the directory is writable first); DirectoryLockedError if held."""
        check_writable(self.directory, self.purpose)
        key = self.directory.resolve()
        if key in _HELD:
            _HELD[key][1] += 1
            self._key = key
            return self
        if fcntl is None:
            return self
        fd = self._lock_file()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = [fd, 1]
        self._key = key
        remove_stale_temps(self.directory)
        return self

    def _lock_file(self) -> int:
        """Open and flock the lock file; retried when a releasing holder unlinked it meanwhile."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DirectoryLockedError(
                    f"The {self.purpose} {str(self.directory)!r} is in use by another Treadmill run (process "
                    f"{_holder(self.path)}, lock file {str(self.path)!r}). Two writers would overwrite each "
                    "other's checkpoints: wait for that run to end, stop it, or use another directory."
                ) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # we locked a file its holder removed on release: lock the current one

    def release(self) -> None:
        """Give the lock back (the outermost release of a nested claim unlocks)."""
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            # Unlink while still holding the lock: a process that opened the old file meanwhile sees
            # it is gone once it gets the lock, and retries on a new one (see _lock_file).
            (self.directory / LOCK_NAME).unlink(missing_ok=True)
            os.close(entry[0])  # closing the last descriptor drops the flock

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
