"""Sanity checks: embedding id ranges, non-finite losses, nested batches, precision, progress."""

import io
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from torch import nn

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.training.checks import EmbeddingIndexError, NonFiniteLossError
from treadmill.training.precision import resolve_precision
from treadmill.training.progress import ProgressReporter
from treadmill.utils import move_to_device

ROOT = Path(__file__).resolve().parents[1]


def quiet(**kwargs):
    return TrainingConfig(progress_bar=False, optimizer=OptimizerConfig("SGD", lr=0.1), **kwargs)


class TwoEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.embedding = nn.Embedding(10, 4)
        self.decoder = nn.Module()
        self.decoder.embedding = nn.Embedding(6, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, source, target):
        return self.out(
            self.encoder.embedding(source).mean(1) + self.decoder.embedding(target[:, :-1]).mean(1)
        )


class DictTrainer(Trainer):
    def _forward_pass(self, batch):
        return self.model(batch["source"], batch["target"])

    def _compute_loss(self, batch, predictions):
        return predictions.pow(2).mean()


def test_out_of_range_embedding_id_names_module_id_size_and_batch_key():
    batch = {"source": torch.randint(0, 10, (4, 5)), "target": torch.tensor([[2, 4, 5, 7, 3]] * 4)}
    trainer = DictTrainer(TwoEmbeddings(), quiet(epochs=1), [batch])
    with pytest.raises(EmbeddingIndexError) as info:
        trainer.fit()
    message = str(info.value)
    assert "'decoder.embedding'" in message
    assert "num_embeddings=6" in message and "id 7" in message
    assert "batch['target']" in message


def test_out_of_range_id_after_the_checked_batches_is_still_diagnosed():
    good = {"source": torch.randint(0, 10, (4, 5)), "target": torch.randint(0, 6, (4, 5))}
    bad = {"source": torch.full((4, 5), 12), "target": torch.randint(0, 6, (4, 5))}
    trainer = DictTrainer(TwoEmbeddings(), quiet(epochs=1), [good, good, good, bad])
    with pytest.raises(EmbeddingIndexError, match=r"'encoder.embedding'.*id 12.*batch\['source'\]"):
        trainer.fit()


def test_seed001_example_as_printed_stops_with_the_embedding_message(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed001_translation.py"), "--as-printed"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert (
        "EmbeddingIndexError: Embedding 'encoder.embedding' has num_embeddings=20" in result.stderr
    )
    assert "batch['source']" in result.stderr


class Explodes(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.blowup = nn.Linear(3, 3)
        self.last = nn.Linear(3, 1)
        with torch.no_grad():
            self.blowup.weight.fill_(float("inf"))

    def forward(self, x):
        return self.last(self.blowup(self.first(x)))


def test_non_finite_loss_names_step_and_first_module():
    data = [(torch.randn(4, 3), torch.randn(4, 1))]
    with pytest.raises(NonFiniteLossError, match=r"step 0.*'blowup' \(Linear\)"):
        Trainer(Explodes(), quiet(epochs=1), data, loss_fn=nn.MSELoss()).fit()


def test_non_finite_loss_from_the_loss_function_itself():
    data = [(torch.randn(4, 3), torch.randn(4, 1))]

    def bad_loss(pred, target):
        return (pred - target).pow(2).mean() * float("nan")

    with pytest.raises(NonFiniteLossError, match="loss function itself"):
        Trainer(nn.Linear(3, 1), quiet(epochs=1), data, loss_fn=bad_loss).fit()


Pair = namedtuple("Pair", ["x", "meta"])


def test_nested_batches_move_to_the_device_keeping_structure():
    batch = {
        "a": torch.ones(2),
        "b": [torch.zeros(1), (torch.ones(3), "text", 7)],
        "c": Pair(torch.ones(1), {"d": torch.ones(2)}),
    }
    moved = move_to_device(batch, torch.device("meta"))
    assert moved["a"].device.type == "meta"
    assert moved["b"][0].device.type == "meta" and moved["b"][1][0].device.type == "meta"
    assert moved["b"][1][1:] == ("text", 7) and isinstance(moved["b"][1], tuple)
    assert isinstance(moved["c"], Pair) and moved["c"].meta["d"].device.type == "meta"


def test_bf16_on_cpu_without_native_support_warns_and_stays_fp32(monkeypatch):
    import treadmill.training.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert resolve_precision("bf16", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu"), force=True) == "bf16"
    with pytest.warns(UserWarning, match="fp16"):
        assert resolve_precision("fp16", torch.device("cpu")) == "fp32"


def test_forced_bf16_trains_under_autocast(monkeypatch):
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x):
            out = self.lin(x)
            seen.append(out.dtype)
            return out

    data = [(torch.randn(4, 3), torch.randn(4, 1))]
    config = quiet(epochs=1, mixed_precision="bf16", force_mixed_precision=True)
    trainer = Trainer(Probe(), config, data, loss_fn=lambda p, t: (p.float() - t).pow(2).mean())
    trainer.fit()
    assert trainer.precision == "bf16" and seen == [torch.bfloat16]
    assert trainer.model.lin.weight.dtype == torch.float32  # master weights stay fp32


def test_plain_progress_output_has_no_control_characters(capsys):
    data = [(torch.randn(4, 3), torch.randn(4, 1))] * 3
    config = TrainingConfig(epochs=2, log_frequency=1, optimizer=OptimizerConfig("SGD", lr=0.01))
    Trainer(nn.Linear(3, 1), config, data, loss_fn=nn.MSELoss()).fit()
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "\r" not in out and "\x1b" not in out


def test_progress_bar_false_prints_only_epoch_summaries():
    stream = io.StringIO()
    reporter = ProgressReporter(enabled=False, stream=stream)
    reporter.start_epoch(0, 1, 10)
    reporter.update(5, 0.5, 1e-3, 100.0)
    reporter.end_epoch({"loss": 0.5})
    assert stream.getvalue().count("\n") == 1
    assert stream.getvalue().startswith("Epoch 1/1  0.0s  loss 0.5000")


@pytest.mark.slow
def test_seed001_example_trains_early_stops_checkpoints_and_translates(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "seed001_translation.py")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Early stopping at epoch" in result.stdout
    assert "Sequence Accuracy: 1.0000" in result.stdout
    assert "Predicted: ['bonjour', 'monde']" in result.stdout
    saved = {p.name for p in (tmp_path / "checkpoints" / "seq2seq").iterdir()}
    assert {"last.pt", "best.safetensors", "best_model_001_NA.pt"} <= saved
