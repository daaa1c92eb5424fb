"""FSDP (strategy='fsdp') via torchrun on CPU (gloo): equal to one process, sharded checkpoints that
resume exactly and load anywhere, activation checkpointing, multi-node launch, and the bad inputs."""

import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.activation_checkpointing import checkpointed_modules, enable_activation_checkpointing
from treadmill.checkpoint import load_checkpoint
from treadmill.training.io_errors import CheckpointError
from treadmill.validation import ConfigError

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from fsdp_worker import build  # noqa: E402

WORKER = Path(__file__).parent / "scripts" / "fsdp_worker.py"
RUN = [sys.executable, "-m", "torch.distributed.run"]


def _run(cmd, timeout=300):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def torchrun(out, *args, nproc=2):
    return _run([*RUN, "--standalone", f"--nproc_per_node={nproc}", str(WORKER), str(out), *map(str, args)])


def single(out, *args):
    return _run([sys.executable, str(WORKER), str(out), "--strategy", "ddp", *map(str, args)])


def load(out, rank=0):
    return torch.load(Path(out) / f"rank{rank}.pt")


def assert_same_weights(got, expected, exact=False):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if exact:
            assert torch.equal(got[key], value), key
        else:
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)


# ---------------------------------------------------------------------- equal to one process

# Each launch of torchrun costs ~10 s here: the MLP runs by default, the Transformers with `-m slow`.
@pytest.mark.parametrize("model", ["mlp", pytest.param("transformer", marks=pytest.mark.slow),
                                   pytest.param("gpt", marks=pytest.mark.slow)])
def test_two_fsdp_ranks_with_accumulation_and_clipping_match_one_process(model, tmp_path):
    # 2 ranks x 2 micro-batches of 2 == one batch of 8 per step; the clipping threshold is below the
    # gradient norm, so every step clips by the global norm over both ranks' shards.
    single(tmp_path / "one", "--model", model, "--batch-size", 8, "--clip", 0.05)
    extra = ["--checkpointing"] if model == "gpt" else []  # activation checkpointing under FSDP too
    result = torchrun(tmp_path / "two", "--model", model, "--batch-size", 2, "--accumulate", 2, "--clip", 0.05, *extra)
    one, rank0, rank1 = load(tmp_path / "one"), load(tmp_path / "two", 0), load(tmp_path / "two", 1)
    assert rank0["world"] == 2 and rank0["global_step"] == one["global_step"] == 8
    assert rank0["grad_norm"] > 0.05  # the clip was active
    assert rank0["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    assert_same_weights(rank1["weights"], rank0["weights"], exact=True)
    assert_same_weights(rank0["weights"], one["weights"])
    assert rank0["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
    assert result.stdout.count("Epoch 2/2") == 1  # only rank 0 prints
    ckpt = tmp_path / "two" / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.safetensors", "last.pt"]
    # each rank wrote its own shard file; best.safetensors holds the gathered full weights
    assert sorted(p.name for p in (ckpt / "last.pt").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp", "state.pt"]
    assert_same_weights(load_checkpoint(ckpt / "best.safetensors")["model"], rank0["weights"], exact=True)
    # one process, no process group, reads the full weights out of the two shard files
    assert_same_weights(load_checkpoint(ckpt / "last.pt")["model"], rank0["weights"], exact=True)


# ---------------------------------------------------------------------- sharded checkpoints

@pytest.mark.slow  # three torchrun launches
def test_sharded_checkpoint_resumes_bit_identically_at_two_ranks_and_loads_into_one_process(tmp_path):
    common = ["--model", "gpt", "--batch-size", 4, "--optimizer", "AdamW"]
    torchrun(tmp_path / "through", *common)
    # 4 steps an epoch: stop at step 3, mid-epoch 1, and resume from the sharded last.pt
    torchrun(tmp_path / "resumed", *common, "--max-steps", 3)
    assert load(tmp_path / "resumed")["global_step"] == 3
    torchrun(tmp_path / "resumed", *common, "--resume")
    through, resumed = load(tmp_path / "through"), load(tmp_path / "resumed")
    assert resumed["global_step"] == through["global_step"] == 8
    assert_same_weights(resumed["weights"], through["weights"], exact=True)
    assert resumed["val_loss"][-1] == through["val_loss"][-1]
    # One process, no process group: the full weights come out of the two ranks' shards.
    state = load_checkpoint(tmp_path / "through" / "ckpt" / "last.pt")
    assert state["format"] == "treadmill-training-state" and state["world_size"] == 2 and state["epoch"] == 2
    assert_same_weights(state["model"], through["weights"], exact=True)
    model, _, _ = build("gpt")
    model.load_state_dict(state["model"])


@pytest.mark.slow
def test_sharded_checkpoint_resumes_in_a_single_process_with_its_optimizer_state(tmp_path):
    torchrun(tmp_path, "--model", "mlp", "--batch-size", 4, "--optimizer", "AdamW", "--epochs", 1)
    model, data, loss_fn = build("mlp")
    config = TrainingConfig(epochs=2, seed=1, device="cpu", progress_bar=False, checkpoint_dir=str(tmp_path / "ckpt"),
                            optimizer=OptimizerConfig("AdamW", lr=0.01))
    trainer = Trainer(model, config, DataLoader(data, batch_size=8), loss_fn=loss_fn)
    with pytest.warns(UserWarning, match="saved at world size 2"):
        trainer.fit(resume_from=tmp_path / "ckpt" / "last.pt")
    assert trainer.global_step == 4 + 4  # 4 steps of the two-rank epoch, then 4 of batch 8 here
    # AdamW's moments came from the shards: a fresh optimizer would have step counts of 4, not 8
    assert all(float(s["step"]) == 8 for s in trainer.optimizer.state.values())


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two launches that wait for each other's rendezvous
def test_two_nodes_rendezvous_over_loopback_and_match_one_process(tmp_path):
    # Two torchrun launches, one per "node", meeting through the c10d rendezvous on 127.0.0.1.
    single(tmp_path / "one", "--model", "mlp", "--batch-size", 8)
    port = _free_port()
    launches = [
        subprocess.Popen([*RUN, "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}", "--rdzv_backend=c10d",
                          f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=treadmill-test", str(WORKER),
                          str(tmp_path / "two"), "--model", "mlp", "--batch-size", "4"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in (0, 1)
    ]
    outputs = [launch.communicate(timeout=300)[0] for launch in launches]
    assert [launch.returncode for launch in launches] == [0, 0], "\n".join(outputs)
    first, second = load(tmp_path / "two", 0), load(tmp_path / "two", 1)
    assert first["world"] == 2
    assert_same_weights(second["weights"], first["weights"], exact=True)
    assert_same_weights(first["weights"], load(tmp_path / "one")["weights"])


# ---------------------------------------------------------------------- activation checkpointing

def _gradients(name, checkpointing):
    model, data, loss_fn = build(name)
    if checkpointing:
        assert enable_activation_checkpointing(model) == len(checkpointed_modules(model)) > 0
    batch = next(iter(DataLoader(data, batch_size=8)))
    inputs = {k: v for k, v in batch.items() if k != "target"}
    loss_fn(model(**inputs), batch["target"]).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["gpt", "transformer"])
def test_activation_checkpointing_gives_the_same_gradients(name):
    plain, recomputed = _gradients(name, False), _gradients(name, True)
    assert plain.keys() == recomputed.keys() and len(plain) > 10
    for key, grad in plain.items():
        torch.testing.assert_close(recomputed[key], grad, rtol=0, atol=1e-7, msg=key)


def test_activation_checkpointing_saves_activations_of_a_gpt():
    # The memory saved is measured by bench/memory.py; here: fewer tensors are kept for backward.
    def saved_bytes(checkpointing):
        model, data, loss_fn = build("gpt", layers=4)
        if checkpointing:
            enable_activation_checkpointing(model)
        kept = []
        batch = next(iter(DataLoader(data, batch_size=8)))

        def pack(tensor):
            kept.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model(tokens=batch["tokens"]), batch["target"])
        loss.backward()
        return sum(kept)

    assert saved_bytes(True) < 0.6 * saved_bytes(False)


def test_a_checkpointed_block_decodes_as_before():
    model, data, _ = build("gpt")
    model.eval()
    tokens = next(iter(DataLoader(data, batch_size=2)))["tokens"]
    with torch.no_grad():
        before = model(tokens)
        enable_activation_checkpointing(model)
        enable_activation_checkpointing(model)  # a second call wraps nothing twice
        assert torch.equal(model(tokens), before)


# ---------------------------------------------------------------------- bad input

def test_fsdp_without_torchrun_shows_the_torchrun_command(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "treadmill.cli", "train", "run.yaml"])
    with pytest.raises(ConfigError, match="strategy='fsdp'") as err:
        Trainer(nn.Linear(2, 1), TrainingConfig(strategy="fsdp", device="cpu", progress_bar=False))
    assert "torchrun --standalone --nproc_per_node=2 -m treadmill.cli train run.yaml" in str(err.value)


def test_activation_checkpointing_on_a_model_without_blocks_is_named():
    with pytest.raises(ConfigError, match="activation_checkpointing=True, but Sequential has no block") as err:
        Trainer(nn.Sequential(nn.Linear(2, 2)), TrainingConfig(activation_checkpointing=True, device="cpu", progress_bar=False))
    assert err.value.field == "activation_checkpointing"


@pytest.mark.parametrize(("fields", "match"), [
    ({"strategy": "zero3"}, "strategy must be one of 'ddp', 'fsdp'"),
    ({"strategy": "fsdp", "mixed_precision": "fp16"}, "Use mixed_precision='bf16'"),
    ({"strategy": "fsdp", "fsdp_wrap": "DecoderBlock"}, "fsdp_wrap must be a list"),
    ({"activation_checkpointing": "yes"}, "activation_checkpointing must be true or false"),
])
def test_bad_strategy_fields_are_named(fields, match):
    with pytest.raises(ConfigError, match=match):
        TrainingConfig(**fields)


def test_fsdp_wrap_naming_a_class_the_model_lacks_is_named(tmp_path, monkeypatch):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        with pytest.raises(ConfigError, match="fsdp_wrap names 'GPTBlock', but Sequential has no module of that class"):
            Trainer(nn.Sequential(nn.Linear(2, 2)), TrainingConfig(strategy="fsdp", fsdp_wrap=["GPTBlock"], device="cpu",
                                                                   progress_bar=False))
    finally:
        dist.destroy_process_group()


def _mlp_trainer(directory, epochs):
    x, y = torch.randn(16, 2), torch.randn(16, 1)
    config = TrainingConfig(epochs=epochs, seed=0, device="cpu", progress_bar=False, checkpoint_dir=str(directory))
    return Trainer(nn.Linear(2, 1), config, DataLoader(TensorDataset(x, y), batch_size=4), loss_fn=nn.MSELoss())


def test_resuming_a_ddp_checkpoint_at_another_world_size_is_named(tmp_path):
    _mlp_trainer(tmp_path, 1).fit()
    state = torch.load(tmp_path / "last.pt")
    assert state["world_size"] == 1 and state["strategy"] == "ddp"
    state["world_size"] = 2  # as a `torchrun --nproc_per_node=2` run writes it
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="World-size mismatch.*run of 2 process.*this run has 1") as err:
        _mlp_trainer(tmp_path, 2).fit(resume_from="last")
    assert "torchrun --nproc_per_node=2" in str(err.value)


def test_resuming_at_the_same_world_size_still_works(tmp_path):
    _mlp_trainer(tmp_path, 1).fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _mlp_trainer(tmp_path, 2)
        trainer.fit(resume_from="last")
    assert trainer.global_step == 8
    assert [str(w.message) for w in caught if "world size" in str(w.message).lower()] == []


FSDP_RUN = """
task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 6, n_train: 200, n_valid: 40, n_test: 40}}
model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32, dropout: 0.0}
data: {max_tokens: 48, eval_batch_size: 40}
training: {epochs: 2, progress_bar: false, optimizer: {lr: 3.0e-3}, strategy: fsdp, activation_checkpointing: true}
seq2seq: {generation: {max_len: 8}}
evaluation: {samples: 0}
diagnostics: {enabled: false}
"""


@pytest.mark.slow
def test_cli_trains_with_fsdp_under_torchrun_and_one_process_rescores_it(tmp_path):
    import json

    config = tmp_path / "run.yaml"
    config.write_text(FSDP_RUN)
    run_dir = tmp_path / "run"
    two = _run([*RUN, "--standalone", "--nproc_per_node=2", "-m", "treadmill.cli", "train", str(config), "--run-dir", str(run_dir)])
    assert two.stdout.count("test (40 examples): ") == 1
    assert (run_dir / "checkpoints" / "last.pt" / ".metadata").is_file()  # sharded
    reported = json.loads((run_dir / "summary.json").read_text())["test"]
    # The gathered best weights decode on every rank, and one process (no torchrun) reproduces them.
    alone = _run([sys.executable, "-m", "treadmill.cli", "eval", str(run_dir)])
    rescored = json.loads(alone.stdout.strip().splitlines()[-1])
    assert rescored["loss"] == pytest.approx(reported["loss"], rel=1e-5)
    assert rescored["bleu"] == pytest.approx(reported["bleu"], rel=1e-5)


def test_run_config_takes_the_strategy_fields(tmp_path):
    from treadmill.cli.config import load_run_config

    config = tmp_path / "run.yaml"
    config.write_text(FSDP_RUN)
    training = load_run_config(config, ["training.fsdp_wrap=[EncoderBlock]"]).training
    assert (training.strategy, training.activation_checkpointing, training.fsdp_wrap) == ("fsdp", True, ["EncoderBlock"])
    with pytest.raises(ConfigError, match="strategy must be one of"):
        load_run_config(config, ["training.strategy=deepspeed"])


@pytest.fixture
def one_rank_group(tmp_path):
    """A process group of this process alone: FSDP runs in-process, with world size 1."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _sharded_mlp_trainer(directory, epochs, strategy="fsdp"):
    x, y = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)), torch.randn(16, 1)
    config = TrainingConfig(epochs=epochs, seed=0, device="cpu", progress_bar=False, checkpoint_dir=str(directory),
                            keep_last_checkpoints=2, strategy=strategy)
    return Trainer(nn.Linear(2, 1), config, DataLoader(TensorDataset(x, y), batch_size=4), loss_fn=nn.MSELoss())


def test_sharded_saves_rotate_and_a_killed_saves_temp_directory_is_removed(tmp_path, one_rank_group):
    from treadmill.sharded_checkpoint import is_sharded_checkpoint, load_sharded_state

    ckpt = tmp_path / "ckpt"
    _sharded_mlp_trainer(ckpt, 3).fit()
    assert sorted(p.name for p in ckpt.iterdir()) == ["last-1.pt", "last.pt"]
    assert [load_sharded_state(ckpt / name)["epoch"] for name in ("last.pt", "last-1.pt")] == [3, 2]
    killed = ckpt / ".last.pt.0badc0de.tmp"  # what a save killed before its rename leaves
    killed.mkdir()
    (killed / "__0_0.distcp").write_bytes(b"partial")
    resumed = _sharded_mlp_trainer(ckpt, 4)
    resumed.fit(resume_from="last")
    assert resumed.global_step == 16 and not killed.exists()
    assert [load_sharded_state(ckpt / name)["epoch"] for name in ("last.pt", "last-1.pt")] == [4, 3]
    # A replicated run continuing the directory writes files; the sharded state it resumed from is kept as last-1.pt.
    replicated = _sharded_mlp_trainer(ckpt, 5, strategy="ddp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the changed strategy is reported as a config difference
        replicated.fit(resume_from="last")
    assert (ckpt / "last.pt").is_file() and is_sharded_checkpoint(ckpt / "last-1.pt")
    assert torch.load(ckpt / "last.pt")["epoch"] == 5 and load_sharded_state(ckpt / "last-1.pt")["epoch"] == 4


@pytest.mark.parametrize(("name", "wrap", "units"), [
    ("gpt", None, {"DecoderBlock": 2}),
    ("transformer", None, {"EncoderBlock": 2, "DecoderBlock": 2}),
    ("gpt", ["FeedForward"], {"FeedForward": 2}),
    ("mlp", None, {}),
])
def test_fsdp_shards_one_unit_per_block_of_the_family_or_as_named(name, wrap, units, one_rank_group):
    from collections import Counter

    from torch.distributed.fsdp import FSDPModule

    model, data, loss_fn = build(name)
    config = TrainingConfig(epochs=1, device="cpu", progress_bar=False, strategy="fsdp", fsdp_wrap=wrap)
    trainer = Trainer(model, config, DataLoader(data, batch_size=8), loss_fn=loss_fn)
    assert trainer.model is model and isinstance(model, FSDPModule)  # sharded in place, root last
    inner = Counter(type(m).__mro__[2].__name__ for m in model.modules() if isinstance(m, FSDPModule) and m is not model)
    assert dict(inner) == units
    trainer.fit()  # and it trains


def test_activation_checkpointing_of_the_set_encoder_gives_the_same_gradients():
    from treadmill.nn import LatentQueryEncoder

    def gradients(checkpointing):
        torch.manual_seed(0)
        encoder = LatentQueryEncoder(d_model=16, n_latents=4, n_heads=2, n_layers=2)
        if checkpointing:
            assert enable_activation_checkpointing(encoder) == 4  # 2 cross-attention + 2 self-attention blocks
        inputs = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(1))
        encoder(inputs).square().sum().backward()
        return {n: p.grad.clone() for n, p in encoder.named_parameters()}

    plain, recomputed = gradients(False), gradients(True)
    for key, grad in plain.items():
        torch.testing.assert_close(recomputed[key], grad, rtol=0, atol=1e-7, msg=key)


class _HubStyleModel(nn.Module):
    """What Treadmill relies on in a Hugging Face model: `_no_split_modules` and its own
    gradient checkpointing switch (transformers itself is not installed for the tests)."""

    _no_split_modules = ["Layer"]
    supports_gradient_checkpointing = True

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.asked = None

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.asked = gradient_checkpointing_kwargs


def test_a_hugging_face_model_uses_its_own_layers_and_checkpointing_switch():
    from treadmill.fsdp import default_wrap_classes

    model = _HubStyleModel()
    assert default_wrap_classes(model) == ["Layer"]
    assert enable_activation_checkpointing(model) == 1
    assert model.asked == {"use_reentrant": False}
