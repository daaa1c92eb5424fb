"""Loggers: metrics.csv / steps.csv contents, TensorBoard scalars read back, MLflow calls."""

import csv
import sys
import types

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks import Callback, CSVLogger, Diagnostics, MLflowLogger, TensorBoardLogger


class LateMetric(Callback):
    """Adds a metric from epoch 2 on: metrics.csv must grow a column."""

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch >= 1:
            metrics["late"] = 10.0 * epoch


def setup():
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    y = x.sum(1, keepdim=True)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)), DataLoader(
        TensorDataset(x, y), batch_size=8
    )


def train(callbacks, epochs=3, **kwargs):
    model, loader = setup()
    config = TrainingConfig(
        epochs=epochs,
        progress_bar=False,
        log_frequency=2,
        optimizer=OptimizerConfig("SGD", lr=0.05),
        **kwargs,
    )
    trainer = Trainer(model, config, loader, loader, loss_fn=nn.MSELoss(), callbacks=callbacks)
    return trainer, trainer.fit()


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_metrics_csv_has_one_row_per_epoch_with_the_history_values(tmp_path):
    (tmp_path / "metrics.csv").write_text("stale,file\n1,2\n")  # a fresh run replaces it
    _, history = train([LateMetric(), CSVLogger(tmp_path)])
    rows = read_csv(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["epoch", "step", "elapsed_s", "loss", "val_loss", "late"]
    assert 0 < float(rows[0]["elapsed_s"]) <= float(rows[1]["elapsed_s"]) <= float(rows[2]["elapsed_s"])
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and [int(r["step"]) for r in rows] == [
        4,
        8,
        12,
    ]
    assert [float(r["loss"]) for r in rows] == history["loss"]
    assert [float(r["val_loss"]) for r in rows] == history["val_loss"]
    assert [r["late"] for r in rows] == ["", "10.0", "20.0"]


def test_steps_csv_merges_trainer_and_diagnostics_scalars_per_step(tmp_path):
    logged = []

    class Recorder(Callback):
        def on_log(self, trainer, scalars):
            if "loss" in scalars:
                logged.append((trainer.global_step, scalars["loss"]))

    train([Diagnostics(every_n_steps=4), CSVLogger(tmp_path), Recorder()])
    rows = read_csv(tmp_path / "steps.csv")
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]  # one row per step, no duplicates
    assert [(int(r["step"]), float(r["loss"])) for r in rows] == logged
    assert [r["diag/grad_norm/0"] != "" for r in rows] == [False, True, False, True, False, True]
    assert {r["epoch"] for r in rows} == {"1", "2", "3"}


@pytest.mark.filterwarnings("ignore:Resuming .* with a different config")
def test_resumed_run_keeps_the_earlier_rows(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    train([CSVLogger(tmp_path)], epochs=2, checkpoint_dir=str(checkpoints))
    model, loader = setup()
    config = TrainingConfig(
        epochs=4,
        progress_bar=False,
        log_frequency=2,
        checkpoint_dir=str(checkpoints),
        optimizer=OptimizerConfig("SGD", lr=0.05),
    )
    history = Trainer(
        model, config, loader, loader, loss_fn=nn.MSELoss(), callbacks=[CSVLogger(tmp_path)]
    ).fit(resume_from="last")
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == history["loss"]
    # the resumed part's clock continues from the first part's: wall-clock curves stay ordered
    times = [float(r["elapsed_s"]) for r in rows]
    assert times == sorted(times) and len(set(times)) == 4
    assert [int(r["step"]) for r in read_csv(tmp_path / "steps.csv")] == [
        2,
        4,
        6,
        8,
        10,
        12,
        14,
        16,
    ]


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, history = train(
        [Diagnostics(every_n_steps=4), TensorBoardLogger(tmp_path, hparams={"model": {"width": 4}})]
    )
    assert list(tmp_path.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "step/loss",
        "step/lr",
        "epoch/loss",
        "epoch/val_loss",
        "diag/grad_norm/0",
        "diag/update_ratio/2",
    } <= scalars
    epoch_loss = events.Scalars("epoch/val_loss")
    assert [e.step for e in epoch_loss] == [1, 2, 3]
    assert [e.value for e in epoch_loss] == pytest.approx(history["val_loss"], rel=1e-6)
    assert [e.step for e in events.Scalars("step/loss")] == [2, 4, 6, 8, 10, 12]
    text = events.Tensors("hparams/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| optimizer.lr | 0.05 |" in text and "| model.width | 4 |" in text


def test_mlflow_logger_names_the_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(
        ImportError, match="MLflowLogger needs the `mlflow` package.*pip install mlflow"
    ):
        MLflowLogger()


def test_mlflow_logger_logs_params_steps_and_epochs(monkeypatch):
    calls = []
    fake = types.ModuleType("mlflow")
    fake.set_experiment = lambda name: calls.append(("experiment", name))
    fake.start_run = lambda run_name=None: calls.append(("start", run_name))
    fake.log_params = lambda params: calls.append(("params", params))
    fake.log_metrics = lambda metrics, step: calls.append(("metrics", step, metrics))
    fake.end_run = lambda status: calls.append(("end", status))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    _, history = train([MLflowLogger(experiment="exp", run_name="r1")], epochs=2)
    assert calls[:2] == [("experiment", "exp"), ("start", "r1")]
    assert calls[2][0] == "params" and calls[2][1]["optimizer.lr"] == "0.05"
    steps = [c[1] for c in calls if c[0] == "metrics" and "loss" in c[2]]
    epochs = [
        (c[1], c[2]["epoch/val_loss"])
        for c in calls
        if c[0] == "metrics" and "epoch/val_loss" in c[2]
    ]
    assert steps == [2, 4, 6, 8] and epochs == list(zip([1, 2], history["val_loss"], strict=True))
    assert calls[-1] == ("end", "FINISHED")
