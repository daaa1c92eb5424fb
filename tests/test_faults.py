"""Faults around checkpoint writes: a kill at every file operation of a rotating save, unusable
newest checkpoints, max_steps stops inside an epoch, and NaN weights about to be saved."""

import errno
import os
import shutil
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, SchedulerConfig, Trainer, TrainingConfig
from treadmill.callbacks import Callback
from treadmill.checkpoint import CheckpointError, load_checkpoint
from treadmill.training.checks import NonFiniteLossError

KILL_STEP = 4  # saves after steps 1..3 filled last.pt, last-1.pt, last-2.pt; the 4th is killed
TOTAL_STEPS = 12  # 2 epochs x 6 batches


class Killed(BaseException):
    """The simulated kill -9: not an Exception, so nothing on the way out handles it."""


def make_trainer(checkpoint_dir, callbacks=(), **overrides):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 4, generator=gen), torch.randn(48, 1, generator=gen)
    settings = dict(
        epochs=2, seed=0, device="cpu", progress_bar=False, log_frequency=5, checkpoint_dir=str(checkpoint_dir),
        checkpoint_every_n_steps=1, keep_last_checkpoints=3, optimizer=OptimizerConfig("Adam", lr=1e-2),
        scheduler=SchedulerConfig("StepLR", params={"step_size": 1, "gamma": 0.5}, interval="epoch"),
    )
    settings.update(overrides)
    return Trainer(
        model, TrainingConfig(**settings), DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True),
        val_dataloader=DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8),
        loss_fn=nn.MSELoss(), callbacks=list(callbacks),
    )


def final_weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def resume(checkpoint_dir, **overrides):
    trainer = make_trainer(checkpoint_dir, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the config differs in max_steps where a test changes it
        trainer.fit(resume_from="last")
    return trainer


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    trainer = make_trainer(tmp_path_factory.mktemp("reference"))
    trainer.fit()
    assert trainer.global_step == TOTAL_STEPS
    return final_weights(trainer)


class FileOps:
    """Counts the file operations of the save after step KILL_STEP and kills the process after
    `survive` of them: that operation raises Killed, and so does every later one (a dead process
    does nothing more, not even its cleanup)."""

    PATCHED = [(os, "replace"), (os, "link"), (os, "fsync"), (os, "remove"), (torch, "save"), (shutil, "copyfile")]

    def __init__(self, monkeypatch, survive):
        self.survive, self.armed, self.dead, self.done = survive, False, False, []
        for module, name in self.PATCHED:
            monkeypatch.setattr(module, name, self._wrap(name, getattr(module, name)))

    def _wrap(self, name, real):
        def operation(*args, **kwargs):
            if self.dead or (self.armed and len(self.done) == self.survive):
                self.dead = True
                raise Killed(f"killed at {name}")
            if self.armed:
                self.done.append(name)
            return real(*args, **kwargs)

        return operation

    def callback(self):
        ops = self

        class Arm(Callback):
            def on_after_optimizer_step(self, trainer):
                ops.armed = trainer.global_step == KILL_STEP  # the save follows in the same batch

            def on_batch_end(self, trainer, batch, batch_idx, loss):
                ops.armed = False

        return Arm()


WITH_LINK = ["save", "fsync", "replace", "link", "replace", "replace", "fsync"]
# Where hard links fail (EPERM: some network and FUSE filesystems) last-1.pt is a fsynced copy.
WITHOUT_LINK = ["save", "fsync", "replace", "link", "copyfile", "fsync", "replace", "replace", "fsync"]


def no_hard_links(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", refuse)


@pytest.mark.parametrize("links, sequence", [(True, WITH_LINK), (False, WITHOUT_LINK)], ids=["link", "copy"])
def test_the_rotating_save_is_this_sequence(tmp_path, monkeypatch, links, sequence):
    if not links:
        no_hard_links(monkeypatch)
    ops = FileOps(monkeypatch, survive=10**6)
    make_trainer(tmp_path, callbacks=[ops.callback()]).fit()
    assert ops.done == sequence
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt") == ["last-1.pt", "last-2.pt", "last.pt"]
    # The last step's save (epoch 1 of 2 in progress) is followed by the epoch end's (epoch 2 done).
    states = [load_checkpoint(tmp_path / n) for n in ("last.pt", "last-1.pt", "last-2.pt")]
    assert [(s["global_step"], s["epoch"], s["batch_in_epoch"]) for s in states] == [(12, 2, 0), (12, 1, 6), (11, 1, 5)]


@pytest.mark.parametrize(
    "links, survive",
    [(True, n) for n in range(len(WITH_LINK))] + [(False, n) for n in range(len(WITHOUT_LINK))],
    ids=[f"link-after-{n}" for n in range(len(WITH_LINK))] + [f"copy-after-{n}" for n in range(len(WITHOUT_LINK))],
)
def test_kill_after_every_file_operation_of_a_rotation_leaves_a_resumable_last(
    reference, tmp_path, monkeypatch, links, survive
):
    if not links:
        no_hard_links(monkeypatch)
    ops = FileOps(monkeypatch, survive)
    with pytest.raises(Killed):
        make_trainer(tmp_path, callbacks=[ops.callback()]).fit()
    assert len(ops.done) == survive
    monkeypatch.undo()  # the next process has working file operations
    sequence = WITH_LINK if links else WITHOUT_LINK
    # last.pt is the previous state until the final rename of the temp file, the new one after it.
    replaced = survive > len(sequence) - 2
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["global_step"] == (KILL_STEP if replaced else KILL_STEP - 1)
    for path in tmp_path.glob("last-*.pt"):  # every rotation file left is complete too
        assert load_checkpoint(path)["global_step"] in range(1, KILL_STEP)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # last.pt is usable: no fallback warning
        trainer = make_trainer(tmp_path)
        trainer.fit(resume_from="last")
    assert trainer.global_step == TOTAL_STEPS
    assert_identical(reference, final_weights(trainer))


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, batch, batch_idx, loss):
        if trainer.global_step == self.step:
            raise Killed(f"killed after step {self.step}")


class ResumedAt(Callback):
    def on_train_start(self, trainer):
        self.step = trainer.global_step


def killed_run(tmp_path):
    with pytest.raises(Killed):
        make_trainer(tmp_path, callbacks=[StopAt(KILL_STEP)]).fit()
    assert [load_checkpoint(tmp_path / n)["global_step"] for n in ("last.pt", "last-1.pt", "last-2.pt")] == [4, 3, 2]


def resume_expecting(tmp_path, message):
    seen = ResumedAt()
    trainer = make_trainer(tmp_path, callbacks=[seen])
    with pytest.warns(UserWarning) as caught:
        trainer.fit(resume_from="last")
    assert any(all(part in str(w.message) for part in message) for w in caught), [str(w.message) for w in caught]
    return trainer, seen.step


def test_truncated_last_falls_back_to_last_1_with_a_warning(reference, tmp_path):
    killed_run(tmp_path)
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    trainer, start = resume_expecting(tmp_path, ["skipped last.pt", "unreadable or truncated", "last-1.pt"])
    assert start == KILL_STEP - 1
    assert_identical(reference, final_weights(trainer))


def test_missing_last_and_corrupt_last_1_fall_back_to_last_2(reference, tmp_path):
    killed_run(tmp_path)
    (tmp_path / "last.pt").unlink()
    (tmp_path / "last-1.pt").write_bytes(b"\x00not a checkpoint")
    trainer, start = resume_expecting(tmp_path, ["skipped last-1.pt", "last-2.pt"])
    assert start == KILL_STEP - 2
    assert_identical(reference, final_weights(trainer))


def test_missing_last_falls_back_to_last_1_saying_so(reference, tmp_path):
    killed_run(tmp_path)
    (tmp_path / "last.pt").unlink()
    trainer, start = resume_expecting(tmp_path, ["last.pt is missing", "last-1.pt"])
    assert start == KILL_STEP - 1
    assert_identical(reference, final_weights(trainer))


def test_no_usable_checkpoint_is_an_error_naming_each_file(tmp_path):
    killed_run(tmp_path)
    for name in ("last.pt", "last-1.pt", "last-2.pt"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint") as err:
        make_trainer(tmp_path).fit(resume_from="last")
    assert all(f"skipped {name}" in str(err.value) for name in ("last.pt", "last-1.pt", "last-2.pt"))


# ---------------------------------------------------------------------- max_steps inside an epoch


def test_max_steps_mid_epoch_records_the_position_and_a_longer_run_continues_exactly(reference, tmp_path):
    stopped = make_trainer(tmp_path, max_steps=4, checkpoint_every_n_steps=None)
    stopped.fit()
    assert stopped.global_step == 4
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["global_step"], state["epoch"], state["batch_in_epoch"]) == (4, 0, 4)
    assert state["history"]["total_epochs"] == 0  # the epoch end is not recorded as done
    assert stopped.history["total_epochs"] == 1  # but the stopped run still validated and ended it
    continued = resume(tmp_path, max_steps=None, checkpoint_every_n_steps=None)
    assert continued.global_step == TOTAL_STEPS
    assert continued.history["total_epochs"] == 2
    assert_identical(reference, final_weights(continued))


def test_max_steps_mid_epoch_then_a_larger_max_steps_then_none(reference, tmp_path):
    make_trainer(tmp_path, max_steps=3).fit()
    assert resume(tmp_path, max_steps=8).global_step == 8  # stops in the second epoch
    assert load_checkpoint(tmp_path / "last.pt")["batch_in_epoch"] == 2
    assert_identical(reference, final_weights(resume(tmp_path, max_steps=None)))


def test_resuming_at_the_same_max_steps_trains_nothing(tmp_path):
    make_trainer(tmp_path, max_steps=4).fit()
    saved = load_checkpoint(tmp_path / "last.pt")
    again = resume(tmp_path, max_steps=4)
    assert again.global_step == 4
    assert_identical(saved["model"], final_weights(again))
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == 4


def test_max_steps_at_an_epoch_end_marks_the_epoch_finished(tmp_path):
    make_trainer(tmp_path, max_steps=6).fit()
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["global_step"], state["epoch"], state["batch_in_epoch"]) == (6, 1, 0)
    assert resume(tmp_path, max_steps=6).global_step == 6


# ---------------------------------------------------------------------- non-finite weights


class PoisonAt(Callback):
    """Makes a weight NaN in the optimizer step `step`: the loss of that step was still finite."""

    def __init__(self, step):
        self.step = step

    def on_after_optimizer_step(self, trainer):
        if trainer.global_step == self.step:
            with torch.no_grad():
                trainer.model[0].weight[0, 0] = float("nan")


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_nan_weights_are_never_checkpointed_between_log_steps(tmp_path, device):
    trainer = make_trainer(tmp_path, callbacks=[PoisonAt(3)], device=device, log_frequency=50, checkpoint_every_n_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"Weights became non-finite at step 3 .*'0\.weight' \(nan\)") as err:
        trainer.fit()
    assert "last.pt was not written" in str(err.value)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["global_step"] == 2
    assert all(bool(torch.isfinite(t).all()) for t in state["model"].values())
    assert [load_checkpoint(tmp_path / n)["global_step"] for n in ("last-1.pt",)] == [1]


def test_nan_weights_are_refused_by_save_checkpoint_and_keep_the_old_file(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1, max_steps=2)
    trainer.fit()
    path = tmp_path / "manual.pt"
    trainer.save_checkpoint(path)
    with torch.no_grad():
        trainer.model[3].bias.fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=r"'3\.bias' \(inf\)"):
        trainer.save_checkpoint(path)
    assert torch.isfinite(load_checkpoint(path)["model"]["3.bias"]).all()


def test_detect_non_finite_off_still_writes(tmp_path):
    trainer = make_trainer(tmp_path, callbacks=[PoisonAt(3)], detect_non_finite=False, max_steps=3)
    trainer.fit()
    assert torch.isnan(load_checkpoint(tmp_path / "last.pt")["model"]["0.weight"][0, 0])
