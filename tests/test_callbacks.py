"""EarlyStopping, ModelCheckpoint, config-driven checkpoints, hook order."""

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    infer_mode,
)
from treadmill.callbacks.model_checkpoint import format_checkpoint_path
from treadmill.checkpoint import load_checkpoint


class ScriptedMetrics(Callback):
    """Injects a scripted validation metric before other callbacks see the epoch."""

    def __init__(self, name, values):
        self.name, self.values = name, list(values)

    def on_epoch_end(self, trainer, epoch, metrics):
        metrics[self.name] = self.values[epoch]


def tiny_setup():
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    return nn.Linear(3, 1), loader


def quiet(**kwargs):
    return TrainingConfig(progress_bar=False, optimizer=OptimizerConfig("SGD", lr=0.01), **kwargs)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("val_loss", "min"),
        ("val_wer", "min"),
        ("val_perplexity", "min"),
        ("val_sequence_accuracy", "max"),
        ("val_bleu", "max"),
        ("val_per_nostress", "min"),
        ("val_nll", "min"),
        ("valLoss", "min"),
        ("val_perfect_match", "max"),  # "per" only as a whole word
        ("val_percent_correct", "max"),
        ("val_exposure_gap", "min"),
    ],
)
def test_mode_is_inferred_from_the_metric_name(name, mode):
    assert infer_mode(name) == mode
    assert EarlyStopping(monitor=name).mode == mode


def test_early_stopping_stops_after_patience_without_improvement():
    model, loader = tiny_setup()
    scores = [0.5, 0.6, 0.6005, 0.59, 0.58, 0.9, 0.9]
    stopper = EarlyStopping(monitor="val_acc", patience=3, min_delta=0.001)
    trainer = Trainer(
        model,
        quiet(epochs=7),
        loader,
        loss_fn=nn.MSELoss(),
        callbacks=[ScriptedMetrics("val_acc", scores), stopper],
    )
    history = trainer.fit()
    # best 0.6 at epoch 2 (0.6005 is within min_delta); epochs 3, 4, 5 do not improve -> stop after 5
    assert history["total_epochs"] == 5
    assert stopper.best == 0.6 and stopper.stopped_epoch == 4


def test_config_patience_adds_early_stopping_on_the_monitor():
    model, loader = tiny_setup()
    scores = [1.0, 0.9, 0.95, 0.96, 0.97, 0.5]
    config = quiet(epochs=6, early_stopping_patience=2, monitor="val_loss")
    trainer = Trainer(
        model, config, loader, loader, loss_fn=nn.MSELoss(), callbacks=[ScriptedMetrics("val_loss", scores)]
    )
    assert trainer.fit()["total_epochs"] == 4


def test_checkpoint_template_names_files_and_keeps_only_the_best(tmp_path):
    model, loader = tiny_setup()
    scores = [0.5, 0.7, 0.6, 0.8]
    checkpoint = ModelCheckpoint(
        str(tmp_path / "best_{epoch:03d}_{val_acc:.4f}.pt"), monitor="val_acc", save_best_only=True
    )
    Trainer(
        model,
        quiet(epochs=4),
        loader,
        loss_fn=nn.MSELoss(),
        callbacks=[ScriptedMetrics("val_acc", scores), checkpoint],
    ).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_004_0.8000.pt"]
    state = load_checkpoint(tmp_path / "best_004_0.8000.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (4, 0)  # saved once epoch 4 is complete
    assert set(state["model"]) == {"weight", "bias"}


def test_checkpoint_save_every_epoch_when_not_best_only(tmp_path):
    model, loader = tiny_setup()
    checkpoint = ModelCheckpoint(
        str(tmp_path / "e{epoch}.pt"), monitor="val_acc", save_best_only=False
    )
    Trainer(
        model,
        quiet(epochs=3),
        loader,
        loss_fn=nn.MSELoss(),
        callbacks=[ScriptedMetrics("val_acc", [1, 2, 3]), checkpoint],
    ).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1.pt", "e2.pt", "e3.pt"]


def warnings_of_three_epochs(model, loader, checkpoint):
    """The warnings of a 3-epoch run whose val_sequence_accuracy is scripted as 0.1, 0.2, 0.3."""
    scripted = ScriptedMetrics("val_sequence_accuracy", [0.1, 0.2, 0.3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(
            model, quiet(epochs=3), loader, loss_fn=nn.MSELoss(), callbacks=[scripted, checkpoint]
        ).fit()
    return [str(w.message) for w in caught]


def test_unknown_template_key_warns_once_and_still_saves(tmp_path):
    model, loader = tiny_setup()
    template = str(tmp_path / "best_model_{epoch:03d}_{val_seq_acc:.4f}.pt")  # seed 001's template
    checkpoint = ModelCheckpoint(
        template, monitor="val_sequence_accuracy", save_best_only=True, mode="max"
    )
    messages = [m for m in warnings_of_three_epochs(model, loader, checkpoint) if "val_seq_acc" in m]
    assert len(messages) == 1
    assert "val_sequence_accuracy" in messages[0]  # the available keys are listed
    assert [p.name for p in tmp_path.iterdir()] == ["best_model_003_NA.pt"]


def test_misspelt_monitor_warns_once_that_nothing_is_saved(tmp_path):
    model, loader = tiny_setup()
    checkpoint = ModelCheckpoint(str(tmp_path / "best.pt"), monitor="val_seq_acc", mode="max")
    messages = [m for m in warnings_of_three_epochs(model, loader, checkpoint) if "ModelCheckpoint" in m]
    assert len(messages) == 1
    assert "'val_seq_acc' is not logged" in messages[0] and "val_sequence_accuracy" in messages[0]
    assert list(tmp_path.iterdir()) == []


def test_resuming_from_a_model_checkpoint_file_starts_the_next_epoch(tmp_path):
    class EpochsSeen(Callback):
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, trainer, epoch, metrics):
            self.epochs.append(epoch)

    model, loader = tiny_setup()
    every_epoch = ModelCheckpoint(str(tmp_path / "e{epoch}.pt"), save_best_only=False)
    Trainer(model, quiet(epochs=3), loader, loss_fn=nn.MSELoss(), callbacks=[every_epoch]).fit()
    state = load_checkpoint(tmp_path / "e2.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (2, 0)  # epoch 2 (1-based) is complete

    seen = EpochsSeen()
    resumed_model, _ = tiny_setup()
    resumed = Trainer(resumed_model, quiet(epochs=3), loader, loss_fn=nn.MSELoss(), callbacks=[seen])
    resumed.fit(resume_from=tmp_path / "e2.pt")
    assert seen.epochs == [2]  # only the third epoch runs; the second is not replayed
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_format_checkpoint_path_reports_missing_keys():
    path, missing = format_checkpoint_path(
        "m_{epoch:02d}_{val_loss:.2f}_{nope}.pt", {"epoch": 3, "val_loss": 0.123}
    )
    assert path == "m_03_0.12_NA.pt" and missing == ["nope"]


def test_config_checkpoint_dir_writes_best_and_last_without_callbacks(tmp_path):
    model, loader = tiny_setup()
    config = quiet(
        epochs=2, checkpoint_dir=str(tmp_path), save_best_model=True, save_last_model=True
    )
    Trainer(model, config, loader, loader, loss_fn=nn.MSELoss()).fit()
    assert {p.name for p in tmp_path.iterdir()} == {"best.safetensors", "last.pt"}
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert set(load_checkpoint(tmp_path / "best.safetensors")["model"]) == {"weight", "bias"}


def test_config_save_top_k_keeps_k_best_weight_files(tmp_path):
    model, loader = tiny_setup()
    config = quiet(
        epochs=4,
        checkpoint_dir=str(tmp_path),
        save_top_k=2,
        monitor="val_acc",
        save_last_model=False,
    )
    scripted = ScriptedMetrics("val_acc", [0.5, 0.9, 0.7, 0.8])
    Trainer(model, config, loader, loader, loss_fn=nn.MSELoss(), callbacks=[scripted]).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best-epoch002.safetensors",
        "best-epoch004.safetensors",
    ]


def test_hook_order_for_one_epoch():
    calls = []

    class Recorder(Callback):
        def on_train_start(self, trainer):
            calls.append("train_start")

        def on_epoch_start(self, trainer, epoch):
            calls.append("epoch_start")

        def on_batch_start(self, trainer, batch, batch_idx):
            calls.append("batch_start")

        def on_before_optimizer_step(self, trainer):
            calls.append("before_step")

        def on_after_optimizer_step(self, trainer):
            calls.append("after_step")

        def on_log(self, trainer, scalars):
            calls.append("log")

        def on_batch_end(self, trainer, batch, batch_idx, loss):
            calls.append("batch_end")

        def on_validation_start(self, trainer):
            calls.append("val_start")

        def on_validation_end(self, trainer, metrics):
            calls.append("val_end")

        def on_epoch_end(self, trainer, epoch, metrics):
            calls.append("epoch_end")

        def on_train_end(self, trainer):
            calls.append("train_end")

    model, loader = tiny_setup()
    Trainer(
        model,
        quiet(epochs=1, log_frequency=2),
        loader,
        loader,
        loss_fn=nn.MSELoss(),
        callbacks=[Recorder()],
    ).fit()
    assert calls == [
        "train_start", "epoch_start",
        "batch_start", "before_step", "after_step", "batch_end",
        "batch_start", "before_step", "after_step", "log", "batch_end",
        "val_start", "val_end", "epoch_end", "train_end",
    ]  # fmt: skip


def test_on_exception_is_called():
    seen = []

    class Boom(Callback):
        def on_batch_start(self, trainer, batch, batch_idx):
            raise RuntimeError("boom")

        def on_exception(self, trainer, exception):
            seen.append(str(exception))

    model, loader = tiny_setup()
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(model, quiet(epochs=1), loader, loss_fn=nn.MSELoss(), callbacks=[Boom()]).fit()
    assert seen == ["boom"]


def test_learning_rate_monitor_records_every_step():
    model, loader = tiny_setup()
    monitor = LearningRateMonitor()
    history = Trainer(
        model, quiet(epochs=2), loader, loss_fn=nn.MSELoss(), callbacks=[monitor]
    ).fit()
    assert monitor.history == [[0.01]] * 4
    assert history["lr"] == [0.01, 0.01]
