"""Faults of the file system and of concurrent writers: a read-only or full disk, a file-size limit,
two writers on one directory, a writer killed while holding the lock."""

import contextlib
import os
import resource
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.test_faults import final_weights, make_trainer
from treadmill.callbacks import Callback
from treadmill.checkpoint import CheckpointError, load_checkpoint
from treadmill.training.dir_lock import LOCK_NAME, DirectoryLock, DirectoryLockedError
from treadmill.training.rotation import atomic_save


def _mount_tmpfs(directory, options):
    """Mount a tmpfs on directory; False where this machine does not allow it (not root, no CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def read_only_directory(path, monkeypatch):
    """A directory nothing can be written into: a read-only tmpfs as root, chmod 555 otherwise."""
    path.mkdir()
    if _mount_tmpfs(path, "ro,size=1m"):
        try:
            yield "the file system is read-only"
        finally:
            subprocess.run(["umount", str(path)], check=True)
    elif os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield "permission denied"
        finally:
            path.chmod(0o755)
    else:  # root without mount rights: permissions do not bind root, so fail the writes by hand
        real_open = os.open

        def refuse(name, flags, *args, **kwargs):
            if str(name).startswith(str(path)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(30, "Read-only file system", str(name))
            return real_open(name, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
        yield "the file system is read-only"


class CountSteps(Callback):
    def __init__(self):
        self.steps = 0

    def on_after_optimizer_step(self, trainer):
        self.steps += 1


def test_a_read_only_checkpoint_directory_is_refused_before_any_step(tmp_path, monkeypatch):
    target = tmp_path / "ro"
    with read_only_directory(target, monkeypatch) as cause:
        counter = CountSteps()
        trainer = make_trainer(target / "checkpoints", callbacks=[counter])
        with pytest.raises(CheckpointError, match=rf"checkpoint directory '{target / 'checkpoints'}' is not writable: {cause}"):
            trainer.fit()
        assert counter.steps == 0  # found at start, not after an epoch of work


class FillDiskAfter(Callback):
    """Fill the file system after `step`'s checkpoint was written, so the next save finds no space."""

    def __init__(self, step, directory):
        self.step, self.directory = step, directory

    def on_batch_end(self, trainer, batch, batch_idx, loss):
        if trainer.global_step == self.step:
            with open(self.directory / "filler", "wb", buffering=0) as filler:
                for chunk in (65536, 1):  # big blocks, then the last bytes
                    with contextlib.suppress(OSError):
                        while True:
                            filler.write(b"\0" * chunk)


@contextlib.contextmanager
def full_disk_or_file_size_limit(directory):
    """(the cause the error must name, a callback that exhausts the space after step 2)."""
    directory.mkdir()
    if _mount_tmpfs(directory, "size=2m"):
        try:
            yield "no space left on the device", FillDiskAfter(2, directory)
        finally:
            subprocess.run(["umount", str(directory)], check=True)
    else:
        with file_size_limit_after(2) as callback:
            yield "file-size limit", callback


@contextlib.contextmanager
def file_size_limit_after(step):
    """RLIMIT_FSIZE lowered (for this process) once `step` is done; SIGXFSZ ignored so writes fail with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    class Limit(Callback):
        def on_batch_end(self, trainer, batch, batch_idx, loss):
            if trainer.global_step == step:
                resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))

    try:
        yield Limit()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _assert_full_disk_keeps_last(checkpoints, cause, callback):
    trainer = make_trainer(checkpoints, callbacks=[callback], keep_last_checkpoints=1)
    with pytest.raises(CheckpointError) as raised:
        trainer.fit()
    message = str(raised.value)
    assert f"Could not write the checkpoint '{checkpoints / 'last.pt'}'" in message
    assert cause in message and "previous last.pt" in message
    return message


def test_a_full_disk_names_the_file_and_the_cause_and_keeps_the_previous_checkpoint(tmp_path):
    checkpoints = tmp_path / "disk"
    with full_disk_or_file_size_limit(checkpoints) as (cause, callback):
        _assert_full_disk_keeps_last(checkpoints, cause, callback)
        state = load_checkpoint(checkpoints / "last.pt")  # the save after step 2, complete
        assert state["global_step"] == 2
        assert not list(checkpoints.glob(".*.tmp"))  # the failed write cleaned up after itself


def test_a_file_size_limit_names_the_cause_and_the_run_resumes_from_the_kept_checkpoint(tmp_path):
    checkpoints = tmp_path / "fsize"
    with file_size_limit_after(2) as callback:
        _assert_full_disk_keeps_last(checkpoints, "or of the file system (EFBIG)", callback)
    assert load_checkpoint(checkpoints / "last.pt")["global_step"] == 2
    resumed = make_trainer(checkpoints, keep_last_checkpoints=1)
    resumed.fit(resume_from="last")
    uninterrupted = make_trainer(tmp_path / "reference", keep_last_checkpoints=1)
    uninterrupted.fit()
    for key, value in final_weights(uninterrupted).items():
        assert torch.equal(value, final_weights(resumed)[key])


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from treadmill.training.dir_lock import DirectoryLock
    lock = DirectoryLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
    """
)


@contextlib.contextmanager
def lock_held_by_another_process(directory):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_writer_is_refused_naming_the_directory_and_the_holder(tmp_path):
    with lock_held_by_another_process(tmp_path) as holder:
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(DirectoryLockedError, match=rf"'{tmp_path}' is in use by another Treadmill run \(process {holder.pid}"):
            make_trainer(tmp_path).fit()
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing removed


def test_the_lock_of_a_killed_writer_is_taken_over_and_its_temp_files_removed(tmp_path):
    with lock_held_by_another_process(tmp_path) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(holder.pid)  # left behind by the dead process
    stale = tmp_path / ".last.pt.x1y2z3.tmp"  # a killed writer's half-written checkpoint
    stale.write_bytes(b"half")
    mine = tmp_path / "notes.tmp"  # not a checkpoint temp name: never touched
    mine.write_text("keep")
    trainer = make_trainer(tmp_path)
    trainer.fit()
    assert not stale.exists() and mine.read_text() == "keep"
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end of the run
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == 12


def test_a_writer_never_removes_another_writers_temp_file(tmp_path):
    other = tmp_path / ".last.pt.abcdef.tmp"  # being written by someone else right now
    other.write_bytes(b"in progress")
    atomic_save({"x": torch.ones(2)}, tmp_path / "last.pt")
    assert other.read_bytes() == b"in progress"


def test_the_lock_is_reentrant_in_one_process_and_released_by_the_outermost(tmp_path):
    outer = DirectoryLock(tmp_path).acquire()
    inner = DirectoryLock(tmp_path).acquire()
    inner.release()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    outer.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_two_cli_runs_into_one_run_directory(tmp_path, capsys):
    from treadmill.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with lock_held_by_another_process(run_dir) as holder:
        code = main(["train", "examples/copy.yaml", "--run-dir", str(run_dir), "training.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"run directory '{run_dir}' is in use by another Treadmill run (process {holder.pid}" in err
    assert "Traceback" not in err
    assert not (run_dir / "config.yaml").exists()  # refused before writing anything
