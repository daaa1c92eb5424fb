"""Checkpoint averaging: the mean of the last N epoch checkpoints, from the API and from a run config."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from treadmill.checkpoint import CheckpointError, atomic_save, average_checkpoints, load_checkpoint
from treadmill.cli.config import RunConfigError, run_config_from_dict
from treadmill.cli.run_dir import load_run


def _save(path, **tensors):
    atomic_save({"model": tensors, "epoch": 1}, path)
    return path


def test_average_is_the_elementwise_mean_in_each_tensors_own_dtype(tmp_path):
    paths = [
        _save(tmp_path / f"{i}.pt", w=torch.full((2, 3), float(i)), h=torch.tensor([1.0, 2.0], dtype=torch.bfloat16) * i,
              steps=torch.tensor([7]))
        for i in (1, 2, 6)
    ]
    mean = average_checkpoints(paths)
    assert torch.equal(mean["w"], torch.full((2, 3), 3.0))
    assert mean["h"].dtype == torch.bfloat16 and torch.equal(mean["h"], torch.tensor([3.0, 6.0], dtype=torch.bfloat16))
    assert torch.equal(mean["steps"], torch.tensor([7]))


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"w": torch.zeros(2), "v": torch.zeros(1)}, "different names"),
        ({"w": torch.zeros(3)}, "'w' is (3,)"),
        ({"w": torch.zeros(2, dtype=torch.float64)}, "torch.float64"),
    ],
)
def test_checkpoints_of_different_models_are_refused_naming_file_and_weight(tmp_path, other, message):
    first = _save(tmp_path / "a.pt", w=torch.zeros(2))
    second = _save(tmp_path / "b.pt", **other)
    with pytest.raises(CheckpointError, match="b.pt") as info:
        average_checkpoints([first, second])
    assert message in str(info.value)


def test_differing_integer_buffers_are_refused(tmp_path):
    first = _save(tmp_path / "a.pt", index=torch.tensor([0, 1]))
    second = _save(tmp_path / "b.pt", index=torch.tensor([1, 0]))
    with pytest.raises(CheckpointError, match="integer buffer 'index'"):
        average_checkpoints([first, second])


@pytest.mark.parametrize(
    ("training", "average_last", "message"),
    [
        ({}, 2, "training.keep_last_checkpoints=1 keeps only 1"),
        ({"keep_last_checkpoints": 3}, 0, "evaluation.average_last must be null or an integer >= 1"),
        ({"keep_last_checkpoints": 3, "save_last_model": False}, 3, "training.save_last_model"),
    ],
)
def test_run_config_rejects_an_average_it_cannot_make(training, average_last, message):
    config = {"task": {"name": "reverse"}, "training": training, "evaluation": {"average_last": average_last}}
    with pytest.raises(RunConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        run_config_from_dict(config)


TINY = """
task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 4, n_train: 200, n_valid: 40, n_test: 40}}
model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32, dropout: 0.0}
data: {batch_size: 32, eval_batch_size: 40}
training: {epochs: 4, progress_bar: false, keep_last_checkpoints: 3, optimizer: {lr: 3.0e-3}}
seq2seq: {generation: {max_len: 8}}
evaluation: {samples: 0, average_last: 3}
diagnostics: {enabled: false}
"""


def treadmill(*args):
    return subprocess.run([sys.executable, "-m", "treadmill.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_a_run_evaluates_and_reloads_the_mean_of_its_last_checkpoints(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    run = tmp_path / "run"
    trained = treadmill("train", config, "--run-dir", run)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "mean weights of the last 3 checkpoints" in trained.stdout
    kept = [run / "checkpoints" / name for name in ("last.pt", "last-1.pt", "last-2.pt")]
    assert [load_checkpoint(path)["epoch"] for path in kept] == [4, 3, 2]

    model = load_run(run).model
    expected = {k: sum(load_checkpoint(p)["model"][k] for p in kept) / 3 for k in load_checkpoint(kept[0])["model"]}
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    best = load_run(run, ["evaluation.average_last=null"]).model
    assert any(not torch.equal(a, b) for a, b in zip(best.state_dict().values(), model.state_dict().values(), strict=True))

    too_many = treadmill("eval", run, "evaluation.average_last=5", "training.keep_last_checkpoints=5")
    assert too_many.returncode == 2 and "last-3.pt, " in too_many.stderr and "Traceback" not in too_many.stderr


def test_average_of_one_checkpoint_is_that_checkpoint(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "only.pt"
    atomic_save({"model": model.state_dict()}, path)
    for key, value in average_checkpoints([path]).items():
        assert torch.equal(value, model.state_dict()[key])
