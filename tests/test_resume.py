"""Exact resume after SIGKILL / SIGTERM, crash-safe checkpoint writes, safe loading."""

import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.checkpoint import (
    CheckpointError,
    export_weights,
    load_checkpoint,
    load_model_weights,
)

WORKER = Path(__file__).parent / "scripts" / "resume_worker.py"
STEPS = 36  # 3 epochs x 12 batches


def run(run_dir, *args, check=True):
    result = subprocess.run(
        [sys.executable, str(WORKER), str(run_dir), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"worker failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def weights(run_dir):
    return torch.load(Path(run_dir) / "final.pt")


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    run(root / "plain")
    run(root / "workers", "--workers", 2)
    run(root / "accumulate", "--sigterm-at-step", 10_000)  # same config (accumulation 2), no signal
    return {
        "plain": weights(root / "plain"),
        "workers": weights(root / "workers"),
        "accumulate": weights(root / "accumulate"),
    }


def test_sigkill_mid_epoch_then_resume_is_bit_identical(reference, tmp_path):
    killed = run(tmp_path, "--kill-at-step", 17, check=False)
    assert killed.returncode == -9
    run(tmp_path, "--resume")
    assert_identical(reference["plain"], weights(tmp_path))


def test_sigkill_with_two_workers_then_resume_is_bit_identical(reference, tmp_path):
    assert run(tmp_path, "--workers", 2, "--kill-at-step", 20, check=False).returncode == -9
    run(tmp_path, "--workers", 2, "--resume")
    assert_identical(reference["workers"], weights(tmp_path))


def test_crash_during_checkpoint_write_keeps_previous_last(reference, tmp_path):
    # checkpoint_every_n_steps=1: the 9th write happens after step 9 and dies half-way.
    assert run(tmp_path, "--kill-during-save", 9, check=False).returncode == -9
    state = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert state["global_step"] == 8
    run(tmp_path, "--resume")
    assert_identical(reference["plain"], weights(tmp_path))


def test_sigterm_finishes_the_step_saves_and_exits_nonzero(reference, tmp_path):
    result = run(tmp_path, "--sigterm-at-step", 10, check=False)
    assert result.returncode == 128 + 15
    assert "finishing the current optimizer step" in result.stdout
    assert "Resume with trainer.fit(resume_from=" in result.stdout
    state = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert (
        state["global_step"] == 11 and state["batch_in_epoch"] == 10
    )  # the group of 2 was completed
    run(tmp_path, "--sigterm-at-step", 10_000, "--resume")
    assert_identical(reference["accumulate"], weights(tmp_path))


@pytest.mark.slow
def test_five_random_sigkills_in_turn_end_bit_identical(reference, tmp_path):
    steps = sorted(random.Random(2026).sample(range(1, STEPS), 5))
    for step in steps:
        args = ["--kill-at-step", step] + (["--resume"] if step != steps[0] else [])
        assert run(tmp_path, *args, check=False).returncode == -9, f"kill at {step} did not happen"
    run(tmp_path, "--resume")
    assert_identical(reference["plain"], weights(tmp_path))


class Evil:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_files_needing_arbitrary_unpickling_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="arbitrary"):
        load_checkpoint(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_checkpoint(path)


def test_mismatch_lists_missing_unexpected_and_shapes():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = {
        "0.weight": torch.zeros(5, 3),
        "0.bias": torch.zeros(4),
        "extra.weight": torch.zeros(1),
    }
    with pytest.raises(CheckpointError) as info:
        load_model_weights(model, state, source="ckpt.pt")
    message = str(info.value)
    assert "missing keys (2): 1.weight, 1.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "0.weight: checkpoint (5, 3) vs model (4, 3)" in message


def small_trainer(tmp_path, **overrides):
    torch.manual_seed(0)
    data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
    config = TrainingConfig(
        progress_bar=False,
        checkpoint_dir=str(tmp_path),
        optimizer=OptimizerConfig("SGD", lr=0.1),
        **overrides,
    )
    return Trainer(nn.Linear(3, 1), config, data, loss_fn=nn.MSELoss())


def test_resume_last_without_checkpoint_starts_fresh_with_a_warning(tmp_path):
    trainer = small_trainer(tmp_path, epochs=1)
    with pytest.warns(UserWarning, match="starting from scratch"):
        trainer.fit(resume_from="last")
    assert trainer.global_step == 3


def test_resume_with_a_different_config_warns_with_the_fields(tmp_path):
    small_trainer(tmp_path, epochs=1).fit()
    trainer = small_trainer(tmp_path, epochs=2, max_grad_norm=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(resume_from="last")
    text = " ".join(str(w.message) for w in caught)
    assert "epochs: 1 -> 2" in text and "max_grad_norm: None -> 1.0" in text
    assert trainer.global_step == 6


def test_keep_last_checkpoints_rotates(tmp_path):
    small_trainer(tmp_path, epochs=3, keep_last_checkpoints=2).fit()
    assert sorted(p.name for p in tmp_path.glob("last*.pt")) == ["last-1.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    assert load_checkpoint(tmp_path / "last-1.pt")["epoch"] == 2


def test_export_weights_round_trips_through_safetensors_with_tied_weights(tmp_path):
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    model[1].weight = model[0].weight  # tied
    path = export_weights(model, tmp_path / "model.safetensors")
    fresh = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    fresh[1].weight = fresh[0].weight
    load_model_weights(fresh, load_checkpoint(path)["model"], source=str(path))
    assert torch.equal(fresh[0].weight, model[0].weight) and fresh[1].weight is fresh[0].weight
