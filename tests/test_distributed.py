"""DDP via torchrun on CPU (gloo): ranks agree, match one process, and resume."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parent / "scripts" / "ddp_worker.py"


def torchrun(out, *args):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        str(out),
        *map(str, args),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def single(out, *args):
    result = subprocess.run(
        [sys.executable, str(WORKER), str(out), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def load(out, rank):
    return torch.load(Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    single(out, "--batch-size", 8)
    return load(out, 0)


def test_two_ranks_with_accumulation_match_one_process(one_process, tmp_path):
    # 2 ranks x 2 micro-batches of 2 == one batch of 8 per optimizer step.
    result = torchrun(tmp_path, "--batch-size", 2, "--accumulate", 2)
    rank0, rank1 = load(tmp_path, 0), load(tmp_path, 1)
    assert rank0["world"] == 2
    for key in rank0["weights"]:
        assert torch.equal(rank0["weights"][key], rank1["weights"][key])
        torch.testing.assert_close(
            rank0["weights"][key], one_process["weights"][key], rtol=1e-5, atol=1e-6
        )
    # validation metrics are reduced over both ranks' shards
    assert rank0["val_loss"] == pytest.approx(one_process["val_loss"], rel=1e-5)
    assert result.stdout.count("Epoch 2/2") == 1  # only rank 0 prints
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.safetensors", "last.pt"]


def test_resume_under_torchrun_continues_to_the_same_weights(one_process, tmp_path):
    torchrun(tmp_path, "--batch-size", 4, "--epochs", 1)
    torchrun(tmp_path, "--batch-size", 4, "--epochs", 2, "--resume")
    resumed = load(tmp_path, 0)
    for key in resumed["weights"]:
        torch.testing.assert_close(
            resumed["weights"][key], one_process["weights"][key], rtol=1e-5, atol=1e-6
        )


def test_checkpoint_saved_under_ddp_loads_in_one_process(tmp_path):
    from torch import nn

    from treadmill.checkpoint import load_checkpoint, load_model_weights

    torchrun(tmp_path, "--batch-size", 4, "--epochs", 1)
    state = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    load_model_weights(model, state["model"])
    assert not any(k.startswith("module.") for k in state["model"])
