"""OverfitReport: memorisation of `overfit_batches` fixed batches, and its failure."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks import OverfitReport


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).float().mean()


def random_labels(n: int = 64, batch_size: int = 8) -> DataLoader:
    """Random inputs with random labels: only memorisation can fit them."""
    return DataLoader(
        TensorDataset(torch.randn(n, 10), torch.randint(0, 4, (n,))),
        batch_size=batch_size,
        shuffle=True,
    )


class InputBlind(nn.Module):
    """Logits from a learned bias only: the output ignores the input, so it cannot memorise."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1)


def fit(
    model: nn.Module, report: OverfitReport, overfit_batches: int = 2, epochs: int = 80
) -> Trainer:
    config = TrainingConfig(
        epochs=epochs,
        overfit_batches=overfit_batches,
        progress_bar=False,
        seed=0,
        optimizer=OptimizerConfig("Adam", lr=0.01),
    )
    trainer = Trainer(
        model,
        config,
        random_labels(),
        loss_fn=nn.CrossEntropyLoss(),
        metric_fns={"accuracy": accuracy},
        callbacks=[report],
    )
    trainer.fit()
    return trainer


def test_mlp_memorises_two_batches(capsys):
    report = OverfitReport()
    trainer = fit(nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 4)), report)
    assert report.memorised is True
    assert trainer.history["accuracy"][-1] == 1.0
    assert trainer.history["loss"][-1] <= 0.05 * trainer.history["loss"][0]
    assert trainer.global_step == 80 * 2  # 2 batches per epoch
    out = capsys.readouterr().out
    assert "Overfit test on 2 batch(es): MEMORISED: train loss" in out and "accuracy 1.000" in out


def test_model_that_ignores_its_input_does_not_memorise(capsys):
    report = OverfitReport()
    trainer = fit(InputBlind(), report)
    assert report.memorised is False
    assert trainer.history["accuracy"][-1] < 0.99
    assert "NOT memorised" in report.message and "output depends on the input" in report.message
    assert report.message in capsys.readouterr().out


def test_too_few_epochs_to_memorise_is_reported_as_failure():
    report = OverfitReport()
    fit(nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 4)), report, epochs=2)
    assert report.memorised is False and "did not fall far enough" in report.message


def test_no_report_without_overfit_batches():
    report = OverfitReport()
    fit(nn.Linear(10, 4), report, overfit_batches=0, epochs=1)
    assert report.memorised is None and report.message == ""


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="loss_ratio"):
        OverfitReport(loss_ratio=1.5)
    with pytest.raises(ValueError, match="accuracy_threshold"):
        OverfitReport(accuracy_threshold=0)
