"""File-system failures said plainly: which path, and why (no space, read-only, permission).

torch reports a failed write as `[enforce fail at inline_container.cc] ... unexpected pos`, with no
path and no cause; the operating system's error behind it is kept as the exception's context.
`checkpoint_io` turns that, and every other `OSError` of a save, into a `CheckpointError` naming
the file; `check_writable` finds an unusable directory before any work is done.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CheckpointError", "check_writable", "checkpoint_io", "describe_os_error", "os_error_behind"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, written, or does not fit the model."""


_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "the file would exceed the file-size limit of the process (ulimit -f, RLIMIT_FSIZE) or of the file system",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.ENOENT: "a directory on the path does not exist",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "the path is a directory",
}


def describe_os_error(err: OSError) -> str:
    """The cause of an OSError in words ("no space left on the device"), with its errno name."""
    name = errno.errorcode.get(err.errno or 0, "")
    cause = _CAUSES.get(err.errno or 0, err.strerror or str(err))
    return f"{cause} ({name})" if name else cause


def os_error_behind(err: BaseException) -> OSError | None:
    """The OSError an exception is, or was raised while handling (torch's writer keeps it as context)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def checkpoint_io(path: Path, what: str = "checkpoint") -> Iterator[None]:
    """Inside the block, an I/O failure becomes a CheckpointError naming `path` and the cause."""
    try:
        yield
    except CheckpointError:
        raise
    except (OSError, RuntimeError) as err:
        cause = os_error_behind(err)
        if cause is None and not (isinstance(err, RuntimeError) and "inline_container" in str(err)):
            raise
        reason = describe_os_error(cause) if cause is not None else f"the write failed ({err})"
        raise CheckpointError(
            f"Could not write the {what} {str(path)!r}: {reason}. The previous {path.name}, if there was one, "
            "is intact."
        ) from err


def check_writable(directory: Path, purpose: str = "checkpoint directory") -> None:
    """Create `directory` if needed and write and remove a probe file in it; a CheckpointError if not."""
    probe = directory / f".treadmill-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.remove(probe)
    except OSError as err:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise CheckpointError(
            f"The {purpose} {str(directory)!r} is not writable: {describe_os_error(err)}. Checked before training "
            "so that no work is lost at the first save; choose a writable directory."
        ) from err
