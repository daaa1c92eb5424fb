"""Bad input, as a new user gives it: each ends in an exception that names the culprit (API) or in
one paragraph and exit code 2 (command line), and nothing already saved is lost."""

import io
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from treadmill import Trainer, TrainingConfig
from treadmill.checkpoint import CheckpointError, load_checkpoint
from treadmill.cli import main
from treadmill.data.datasets import read_tsv_pairs
from treadmill.data.tokenizers import load_tokenizer
from treadmill.training.checks import EmbeddingIndexError
from treadmill.validation import ConfigError, DataError

TINY = """
task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 4, n_train: 200, n_valid: 40, n_test: 40}}
model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32, dropout: 0.0}
data: {batch_size: 32, eval_batch_size: 40}
training: {epochs: 1, progress_bar: false, optimizer: {lr: 3.0e-3}}
seq2seq: {generation: {max_len: 8}}
evaluation: {samples: 0}
diagnostics: {enabled: false}
"""


# ---------------------------------------------------------------------- the library


def regression(n=32, batch_size=8):
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, generator=gen), torch.randn(n, 1, generator=gen))
    return DataLoader(data, batch_size=batch_size)


def quiet(**fields):
    return TrainingConfig(device="cpu", progress_bar=False, epochs=1, **fields)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"checkpoint_dir": 123}, r"TrainingConfig.checkpoint_dir must be null or a directory path, got 123 \(int\)"),
        ({"save_best_model": "no"}, r"TrainingConfig.save_best_model must be true or false, got 'no' \(str\)"),
        ({"monitor": None}, r"TrainingConfig.monitor must be a string, got None"),
        ({"progress_bar": 1}, r"TrainingConfig.progress_bar must be true or false, got 1 \(int\)"),
        ({"device": 0}, r"TrainingConfig.device must be a string, got 0"),
        ({"epochs": 2.5}, r"TrainingConfig.epochs must be an integer >= 1, got 2.5"),
    ],
)
def test_training_config_fields_are_type_checked_at_construction(fields, message):
    with pytest.raises(ConfigError, match=message) as raised:
        TrainingConfig(**fields)
    assert raised.value.field == next(iter(fields))


def test_a_dict_config_is_checked_like_a_training_config(tmp_path):
    trainer = Trainer(nn.Linear(3, 1), {"epochs": 1, "device": "cpu", "progress_bar": False,
                                        "checkpoint_dir": tmp_path}, regression(), loss_fn=nn.MSELoss())
    assert isinstance(trainer.config, TrainingConfig) and trainer.config.checkpoint_dir == str(tmp_path)
    trainer.fit()
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == 4
    with pytest.raises(ConfigError, match="TrainingConfig has no field 'epoch'. Did you mean 'epochs'?"):
        Trainer(nn.Linear(3, 1), {"epoch": 1}, regression(), loss_fn=nn.MSELoss())
    with pytest.raises(ConfigError, match=r"Trainer\(config=...\) must be a TrainingConfig or a dict of its fields, got list"):
        Trainer(nn.Linear(3, 1), [("epochs", 1)], regression(), loss_fn=nn.MSELoss())


def test_empty_loaders_are_refused_with_their_name(tmp_path):
    empty = DataLoader(TensorDataset(torch.zeros(0, 3), torch.zeros(0, 1)), batch_size=8)
    with pytest.raises(DataError, match="train_dataloader is empty"):
        Trainer(nn.Linear(3, 1), quiet(), empty, loss_fn=nn.MSELoss())
    with pytest.raises(DataError, match="val_dataloader is empty"):
        Trainer(nn.Linear(3, 1), quiet(), regression(), empty, loss_fn=nn.MSELoss())

    class Nothing(IterableDataset):
        def __iter__(self):
            return iter(())

    trainer = Trainer(nn.Linear(3, 1), quiet(checkpoint_dir=str(tmp_path)), DataLoader(Nothing()), loss_fn=nn.MSELoss())
    with pytest.raises(DataError, match="train_dataloader yielded no batches in epoch 1"):
        trainer.fit()
    assert not (tmp_path / "last.pt").exists()  # no checkpoint of a run that trained nothing
    fine = Trainer(nn.Linear(3, 1), quiet(), regression(), loss_fn=nn.MSELoss())
    with pytest.raises(DataError, match="the evaluation loader yielded no batches"):
        fine.evaluate(DataLoader(Nothing()))


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x):
        return self.linear(x)


@pytest.mark.parametrize(
    "loss_fn, message",
    [
        (lambda out, y: (out - y) ** 2, r"at step 0 \(epoch 1, batch 0\) the loss has shape \(8, 1\)\. Reduce it"),
        (lambda out, y: ((out - y) ** 2).mean().detach(), r"the loss does not require grad: it was detached"),
        (lambda out, y: float(((out - y) ** 2).mean().detach()), r"_compute_loss must return a tensor, .* got float"),
    ],
    ids=["not-scalar", "detached", "float"],
)
def test_a_bad_loss_says_what_compute_loss_must_return(tmp_path, loss_fn, message):
    first = Trainer(Regressor(), quiet(checkpoint_dir=str(tmp_path)), regression(), loss_fn=nn.MSELoss())
    first.fit()
    saved = load_checkpoint(tmp_path / "last.pt")["model"]
    trainer = Trainer(Regressor(), quiet(checkpoint_dir=str(tmp_path)), regression(), loss_fn=loss_fn)
    with pytest.raises((TypeError, ValueError), match=message) as raised:
        trainer.fit()
    assert "_compute_loss" in str(raised.value)
    kept = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(saved[k], kept[k]) for k in saved)


class TokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, ids):
        return self.out(self.embed(ids)).mean(dim=1)


def test_an_out_of_range_id_in_a_later_validation_batch_names_the_embedding():
    ids = torch.randint(0, 10, (24, 5), generator=torch.Generator().manual_seed(0))
    bad = ids.clone()
    bad[17, 2] = 12  # in the third validation batch, not the first
    targets = torch.zeros(24, 1)
    trainer = Trainer(TokenModel(), quiet(), DataLoader(TensorDataset(ids, targets), batch_size=8),
                      DataLoader(TensorDataset(bad, targets), batch_size=8), loss_fn=nn.MSELoss())
    with pytest.raises(EmbeddingIndexError, match=r"In val_dataloader, batch 2: Embedding 'embed' has num_embeddings=10 .* received id 12\. The ids come from batch\[0\]"):
        trainer.fit()


def test_a_tsv_with_non_utf8_bytes_names_file_line_and_column(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"abc\tx y z\nd\xe9f\tf e d\n")
    with pytest.raises(DataError, match=rf"{path}:2: byte\(s\) e9 at column 2 .* not valid UTF-8"):
        read_tsv_pairs(path)


def test_an_unreadable_data_file_is_named_with_the_cause(tmp_path, monkeypatch):
    path = tmp_path / "pairs.tsv"
    path.write_text("a\tb\n")
    real = Path.read_bytes

    def refuse(self):
        if self == path:  # permissions do not bind root, so the refusal is injected
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(DataError, match=rf"The data file '{path}' cannot be read: permission denied \(EACCES\)"):
        read_tsv_pairs(path)
    with pytest.raises(DataError, match=rf"'{tmp_path}' is a directory"):
        read_tsv_pairs(tmp_path)


def test_a_deeply_nested_tokenizer_file_is_a_named_error(tmp_path):
    path = tmp_path / "src.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=rf"tokenizer file '{path}' is nested too deeply"):
        load_tokenizer(path)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_not_called_a_checkpoint_with_python_objects(tmp_path, seed):
    path = tmp_path / "last.pt"
    path.write_bytes(random.Random(seed).randbytes(4096))  # each makes torch's unpickler fail differently
    with pytest.raises(CheckpointError, match=rf"'{path}' is not a PyTorch checkpoint, or is corrupted") as raised:
        load_checkpoint(path)
    assert "unpickling" not in str(raised.value)


# ---------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    (root / "tiny.yaml").write_text(TINY)
    assert main(["train", str(root / "tiny.yaml"), "--run-dir", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture
def damaged(trained, tmp_path):
    """A copy of the trained run to break."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


def fails_cleanly(capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"treadmill {argv[0]}: error: ") and "Traceback" not in err, err
    assert "\n\n" not in err.strip(), err  # one paragraph
    return err


def test_broken_config_yaml(damaged, capsys):
    (damaged / "config.yaml").write_text("task: {name: reverse\nmodel: [")
    err = fails_cleanly(capsys, "generate", damaged, "abc")
    assert f"Cannot read run config '{damaged / 'config.yaml'}'" in err


@pytest.mark.parametrize("cut", [0, 40, 1000])
def test_truncated_best_weights(damaged, capsys, cut):
    best = damaged / "checkpoints" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:cut])
    err = fails_cleanly(capsys, "generate", damaged, "abc")
    assert f"Weights file '{best}' is unreadable or truncated" in err


def test_broken_task_json(damaged, capsys):
    (damaged / "task.json").write_text('{"kind": "seq2seq",')
    err = fails_cleanly(capsys, "generate", damaged, "abc")
    assert f"{damaged / 'task.json'}:1: the run's task file is not valid JSON" in err


def test_missing_tokenizers_are_refused_unless_refitting_is_asked_for(damaged, capsys):
    expected = main(["generate", str(damaged), "abc"])
    assert expected == 0
    output = capsys.readouterr().out
    shutil.rmtree(damaged / "tokenizers")
    for command in (["generate", damaged, "abc"], ["eval", damaged]):
        err = fails_cleanly(capsys, *command)
        assert f"is missing {damaged / 'tokenizers' / 'src.json'}, {damaged / 'tokenizers' / 'tgt.json'}" in err
        assert "--refit-tokenizers" in err
    assert main(["generate", str(damaged), "abc", "--refit-tokenizers"]) == 0
    assert capsys.readouterr().out == output  # the same data: the refitted tokenizers are the same


def test_a_deep_tokenizer_file_in_a_run(damaged, capsys):
    (damaged / "tokenizers" / "src.json").write_text("[" * 100_000 + "]" * 100_000)
    err = fails_cleanly(capsys, "generate", damaged, "abc")
    assert "src.json' is nested too deeply" in err


def test_non_utf8_stdin(trained, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"abc\nd\xffe\n"), encoding="utf-8"))
    err = fails_cleanly(capsys, "generate", trained)
    assert "<stdin>:2: byte(s) ff at column 2" in err


def test_non_utf8_stdin_under_a_utf8_locale_in_a_real_process(trained):
    done = subprocess.run([sys.executable, "-m", "treadmill.cli", "generate", str(trained)], input=b"ab\n\xc3(\n",
                          capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"},
                          timeout=300)
    assert done.returncode == 2
    assert b"<stdin>:2: byte(s) c3 28 at column 1" in done.stderr or b"<stdin>:2: byte(s) c3 at column 1" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_non_utf8_data_file_on_the_command_line(tmp_path, capsys):
    data = tmp_path / "train.tsv"
    data.write_bytes(b"a b\tb a\nc\xe9\td\n")
    (tmp_path / "valid.tsv").write_text("a b\tb a\n")
    config = tmp_path / "files.yaml"
    config.write_text(TINY.replace(
        "task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 4, n_train: 200, n_valid: 40, n_test: 40}}",
        f"task: {{name: files, options: {{train: {data}, valid: {tmp_path / 'valid.tsv'}}}}}",
    ))
    err = fails_cleanly(capsys, "train", config, "--run-dir", tmp_path / "run", "evaluation.splits=[valid]")
    assert f"{data}:2: byte(s) e9" in err


def test_an_os_error_on_the_command_line_names_the_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    err = fails_cleanly(capsys, "train", "examples/copy.yaml", "--run-dir", blocker / "run")
    assert f"'{blocker / 'run'}' is not writable: a part of the path is a file, not a directory (ENOTDIR)" in err

