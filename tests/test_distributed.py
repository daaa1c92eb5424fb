"""DDP via torchrun on CPU (gloo): ranks agree, match one process, and resume."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from treadmill.distributed import is_main_process

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


def test_a_stop_one_rank_asks_for_is_agreed_at_the_next_log_step(tmp_path):
    # 64 samples, 4 per rank: 8 steps an epoch. Rank 1 alone asks to stop at step 3; stopping there
    # alone would leave rank 0 waiting in step 4's gradient all-reduce.
    torchrun(tmp_path, "--batch-size", 4, "--stop-rank1-at-step", 3, "--log-frequency", 4)
    first, second = load(tmp_path, 0), load(tmp_path, 1)
    assert first["global_step"] == second["global_step"] == 4
    for name, value in first["weights"].items():
        torch.testing.assert_close(second["weights"][name], value)


def test_checkpoint_saved_under_ddp_loads_in_one_process(tmp_path):
    from torch import nn

    from treadmill.checkpoint import load_checkpoint, load_model_weights

    torchrun(tmp_path, "--batch-size", 4, "--epochs", 1)
    state = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    load_model_weights(model, state["model"])
    assert not any(k.startswith("module.") for k in state["model"])


def test_shard_loader_deals_token_budget_batches_between_ranks():
    # Without this, every rank of a `data.max_tokens` run trained on the same batches.
    from torch.utils.data import DataLoader

    from treadmill.data import TokenBudgetBatchSampler
    from treadmill.distributed import DistInfo, shard_loader

    lengths = [1 + (i * 7) % 13 for i in range(200)]
    sampler = TokenBudgetBatchSampler(lengths, 40, seed=5)
    loader = DataLoader(list(range(200)), batch_sampler=sampler, collate_fn=list)
    full = list(loader)
    first, second = (list(shard_loader(loader, DistInfo(rank=r, world_size=2), seed=0)) for r in (0, 1))
    assert len(first) == len(second) == -(-len(full) // 2)
    assert first == full[0::2] and second[: len(full) // 2] == full[1::2]
    assert {i for batch in first + second for i in batch} == set(range(200))


TOKEN_BUDGET_RUN = """
task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 6, n_train: 400, n_valid: 40, n_test: 40}}
model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32, dropout: 0.0}
data: {max_tokens: 48, eval_batch_size: 40}
# "Best" is the highest validation loss, so the best weights (which every rank must evaluate)
# are an early epoch's, not the last epoch's that each rank holds when training ends.
training: {epochs: 3, progress_bar: false, optimizer: {lr: 3.0e-3}, monitor: val_loss, monitor_mode: max}
seq2seq: {generation: {max_len: 8}}
evaluation: {samples: 0}
diagnostics: {enabled: false}
"""


def _epoch_steps(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    return [after - before for before, after in zip([0, *steps], steps, strict=False)]


def test_cli_under_torchrun_deals_token_budget_batches_and_rank_0_writes_the_run(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(TOKEN_BUDGET_RUN)
    cli = ["-m", "treadmill.cli", "train", str(config), "--run-dir"]
    one = subprocess.run([sys.executable, *cli, str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *cli, str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    # Each rank takes half of every epoch's batches (rounded up), not all of them.
    assert _epoch_steps(tmp_path / "two") == [-(-steps // 2) for steps in _epoch_steps(tmp_path / "one")]
    assert two.stdout.count("Run directory:") == 1 and two.stdout.count("test (40 examples): ") == 1
    with open(tmp_path / "two" / "predictions.tsv") as handle:
        assert len(handle.read().splitlines()) == 41
    # Both ranks evaluated the saved best weights: one process scoring them gets the same numbers.
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    val_loss = summary["history"]["val_loss"]
    assert max(val_loss) != val_loss[-1], "the test needs a best epoch that is not the last"
    reported = summary["test"]
    alone = subprocess.run([sys.executable, "-m", "treadmill.cli", "eval", str(tmp_path / "two")],
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr
    rescored = json.loads(alone.stdout.strip().splitlines()[-1])
    assert rescored["loss"] == pytest.approx(reported["loss"], rel=1e-5)
    assert rescored["exact_match"] == reported["exact_match"]


def test_sequence_level_fine_tuning_runs_under_torchrun(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(TOKEN_BUDGET_RUN)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "treadmill.cli", "train", str(config), "--run-dir", str(tmp_path / "run"),
                          "training.epochs=1", "sequence_level.enabled=true", "sequence_level.max_steps=2"],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("Fine-tuning (mrt") == 1 and two.stdout.count("test (40 examples): ") == 1
    assert (tmp_path / "run" / "checkpoints_finetune" / "last.pt").is_file()
    # The fine-tuned weights every rank evaluated are the ones `treadmill eval` loads.
    reported = json.loads((tmp_path / "run" / "summary.json").read_text())["test"]
    alone = subprocess.run([sys.executable, "-m", "treadmill.cli", "eval", str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout.strip().splitlines()[-1])["loss"] == pytest.approx(reported["loss"], rel=1e-5)


@pytest.mark.parametrize(("env", "main"), [({}, True), ({"RANK": "0", "WORLD_SIZE": "2"}, True),
                                           ({"RANK": "1", "WORLD_SIZE": "2"}, False),
                                           ({"RANK": "3", "WORLD_SIZE": "1"}, True)])  # a leftover RANK alone
def test_is_main_process_follows_torchrun_variables(monkeypatch, env, main):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_main_process() is main


def test_a_model_already_in_ddp_is_wrapped_once(tmp_path):
    # A second trainer (sequence-level fine-tuning) may be handed the first one's wrapped model.
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from treadmill.distributed import wrap_ddp

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        linear = nn.Linear(3, 2)
        twice = wrap_ddp(wrap_ddp(linear, torch.device("cpu")), torch.device("cpu"))
        assert isinstance(twice, DistributedDataParallel) and twice.module is linear
    finally:
        dist.destroy_process_group()
