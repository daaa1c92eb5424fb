"""Code written for pytorch-treadmill 0.6.5 (in the style of its README and docs; our own code) runs
unchanged on Treadmill, and that package's bugs do not come along (docs/compat.md)."""

import csv
import sys
import types

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, SchedulerConfig, Trainer, TrainingConfig
from treadmill.callbacks import (
    Callback,
    GradientClipping,
    LearningRateLogger,
    MetricsLogger,
    WandbLogger,
)
from treadmill.metrics import MetricsTracker, StandardMetrics, compute_metrics
from treadmill.training.experiment_dir import experiment_dir_name
from treadmill.validation import ConfigError


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def loaders(n=96, batch_size=16):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 10, generator=gen), torch.randint(0, 3, (n,), generator=gen)
    return (DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(x[:32], y[:32]), batch_size=batch_size))


def config(**fields):
    settings = dict(epochs=2, device="cpu", optimizer=OptimizerConfig(optimizer_class="Adam", lr=1e-2),
                    validate_every=1, print_every=5, progress_bar=False, seed=0)
    settings.update(fields)
    return TrainingConfig(**settings)


# ---------------------------------------------------------------------- configs


def test_config_defaults_and_resolved_classes():
    assert OptimizerConfig().optimizer_class is torch.optim.Adam and OptimizerConfig().lr == 1e-3
    assert OptimizerConfig(optimizer_class="SGD").optimizer_class is torch.optim.SGD
    assert SchedulerConfig("StepLR").scheduler_class is torch.optim.lr_scheduler.StepLR
    assert SchedulerConfig().scheduler_class is None
    default = TrainingConfig()
    assert default.epochs == 10 and default.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert default.to_dict()["device"] == "auto"  # a saved config still means "the best device there"
    assert TrainingConfig(**default.to_dict()).optimizer.optimizer_class is torch.optim.Adam  # round trip


def test_an_optimizer_dict_with_loose_arguments():
    cfg = TrainingConfig(optimizer={"optimizer_class": "SGD", "lr": 1e-2, "momentum": 0.9, "params": {"nesterov": True}})
    assert cfg.optimizer.optimizer_class is torch.optim.SGD
    assert cfg.optimizer.params == {"momentum": 0.9, "nesterov": True}
    trainer = Trainer(Classifier(), TrainingConfig(device="cpu", progress_bar=False, optimizer=cfg.optimizer),
                      loaders()[0], loss_fn=nn.CrossEntropyLoss())
    assert trainer.optimizer.defaults["momentum"] == 0.9 and trainer.optimizer.defaults["nesterov"] is True


def test_project_name_makes_an_experiment_directory_in_the_time_zone(tmp_path):
    cfg = config(checkpoint_dir=str(tmp_path), project_name="my mnist", timezone="IST")
    created = [p.name for p in tmp_path.iterdir()]
    assert len(created) == 1 and cfg.checkpoint_dir == str(tmp_path / created[0])
    assert created[0].startswith("my_mnist-experiment-") and created[0].endswith("-IST")
    again = config(checkpoint_dir=str(tmp_path), project_name="my mnist", timezone="IST")
    assert again.checkpoint_dir != cfg.checkpoint_dir  # two runs never share a directory
    from datetime import datetime, timezone

    noon_utc = datetime(2026, 1, 15, 6, 30, 5, tzinfo=timezone.utc)
    assert experiment_dir_name("p", "IST", now=noon_utc) == "p-experiment-15-01-2026-12-00-05pm-IST"
    assert config(checkpoint_dir=str(tmp_path / "plain")).checkpoint_dir == str(tmp_path / "plain")  # no project: as given


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"resume_training": True}, "resume_training=True needs checkpoint_dir"),
        ({"timezone": "Mars/Olympus"}, "TrainingConfig.timezone='Mars/Olympus' is not a time zone"),
        ({"additional_epochs": 0}, "TrainingConfig.additional_epochs must be null or an integer >= 1"),
        ({"custom_forward_fn": 3}, "TrainingConfig.custom_forward_fn must be a function"),
    ],
)
def test_its_fields_are_checked(tmp_path, fields, message):
    if "timezone" in fields:
        fields = {**fields, "checkpoint_dir": str(tmp_path), "project_name": "p"}
    with pytest.raises(ConfigError, match=message):
        config(**fields)


# ---------------------------------------------------------------------- metrics


def test_standard_metrics_on_every_input_form():
    logits = torch.tensor([[2.0, 0.1, 0.0], [0.1, 0.2, 3.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.5]])
    indices = torch.tensor([0, 2, 2, 1])
    assert StandardMetrics.accuracy(logits, indices) == 0.5
    assert StandardMetrics.accuracy(logits, nn.functional.one_hot(indices, 3).float()) == 0.5
    assert StandardMetrics.accuracy(torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    assert StandardMetrics.top_k_accuracy(logits, indices, k=2) == 0.75
    assert StandardMetrics.top_k_accuracy(logits, indices, k=5) == 1.0  # k above the class count: all of them
    # predicted 0, 2, 1, 0 for 0, 2, 2, 1. F1 per class: 0: tp 1 fp 1 fn 0 -> 2/3; 1: tp 0 -> 0; 2: tp 1 fn 1 -> 2/3
    assert StandardMetrics.f1_score(logits, indices) == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    assert StandardMetrics.f1_score(logits, indices, average="micro") == pytest.approx(0.5)
    assert StandardMetrics.mean_squared_error(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0])) == 2.5
    assert StandardMetrics.mean_absolute_error(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0])) == 1.5
    assert set(compute_metrics(logits, indices)) == {"accuracy", "top5_acc"}
    assert set(compute_metrics(torch.tensor([1.0]), torch.tensor([1.0]))) == {"mse", "mae"}
    with pytest.raises(ValueError, match="metric 'broken' failed"):
        compute_metrics(logits, indices, {"broken": lambda p, t: 1 / 0})


def test_the_tracker_averages_the_whole_epoch_not_the_last_100_batches():
    tracker = MetricsTracker(window_size=100)
    for value in [1.0] * 100 + [3.0] * 100:  # the original reported 3.0: only the last 100 batches
        tracker.update({"loss": value}, mode="train")
    assert tracker.get_current_metrics("train")["loss"] == 3.0  # the display window
    assert tracker.end_epoch()["train_loss"] == 2.0
    tracker.update({"loss": 1.0}, mode="val", n=30)  # batch sizes weight the mean when given
    tracker.update({"loss": 4.0}, mode="val", n=10)
    tracker.end_epoch()
    tracker.update({"loss": 2.5, "accuracy": 0.5}, mode="val")
    tracker.end_epoch()
    assert tracker.get_epoch_metrics("val")["loss"] == [1.75, 2.5]
    assert tracker.get_best_metrics("val") == {"loss": 1.75, "accuracy": 0.5}
    assert not tracker.is_best_epoch("loss") and tracker.is_best_epoch("accuracy")


# ---------------------------------------------------------------------- training


def test_a_training_run_returns_its_history_shape():
    train, val = loaders()
    trainer = Trainer(Classifier(), config(), train, val, loss_fn=nn.CrossEntropyLoss(),
                      metric_fns={"accuracy": StandardMetrics.accuracy})
    history = trainer.train()
    assert history["total_epochs"] == 2
    assert len(history["train_metrics"]["loss"]) == 2 and len(history["val_metrics"]["accuracy"]) == 2
    assert history["best_metrics"]["loss"] == min(history["val_metrics"]["loss"])
    assert trainer.history is history and trainer.current_epoch == 2


class OldStyleCallback(Callback):
    """Written for pytorch-treadmill: batch hooks without the batch."""

    def __init__(self):
        self.seen = []

    def on_batch_start(self, trainer, batch_idx, **kwargs):
        self.seen.append(("start", batch_idx))

    def on_batch_end(self, trainer, batch_idx, metrics, **kwargs):
        self.seen.append(("end", batch_idx, round(metrics["loss"], 6)))


def test_each_of_its_callbacks_in_a_run(tmp_path, monkeypatch):
    logged = []
    fake = types.SimpleNamespace(init=lambda **kw: types.SimpleNamespace(
        log=lambda data, step: logged.append((step, data)), finish=lambda: logged.append("finished"), config=kw))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    old, lr, metrics_log = OldStyleCallback(), LearningRateLogger(verbose=False), MetricsLogger(tmp_path / "m.csv")
    train, val = loaders()
    cfg = config(scheduler=SchedulerConfig("StepLR", params={"step_size": 1, "gamma": 0.5}))
    Trainer(Classifier(), cfg, train, val, loss_fn=nn.CrossEntropyLoss(),
            callbacks=[old, lr, metrics_log, WandbLogger("proj", local_dir=tmp_path / "wandb")]).fit()
    assert [s[:2] for s in old.seen[:4]] == [("start", 0), ("end", 0), ("start", 1), ("end", 1)]
    assert lr.lr_history == [1e-2, 5e-3]
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [row["epoch"] for row in rows] == ["0", "1"] and float(rows[1]["val_loss"]) == metrics_log.metrics_history[1]["val_loss"]
    assert logged[-1] == "finished" and any("epoch/val_loss" in entry[1] for entry in logged[:-1])
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        WandbLogger("proj")


class NormSpy(Callback):
    def __init__(self):
        self.norms = []

    def on_after_optimizer_step(self, trainer):
        pass

    def on_before_optimizer_step(self, trainer):
        params = [p for p in trainer.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.nn.utils.clip_grad_norm_(params, float("inf"))))


def test_gradient_clipping_really_clips():
    train, _ = loaders()
    clip, spy = GradientClipping(max_norm=0.05), NormSpy()
    clipped = Trainer(Classifier(), config(epochs=1), train, loss_fn=nn.CrossEntropyLoss(), callbacks=[clip, spy])
    clipped.fit()
    assert clip.last_norm > 0.05 and max(spy.norms) <= 0.05 * (1 + 1e-5)  # what the optimizer stepped with
    free = Trainer(Classifier(), config(epochs=1), train, loss_fn=nn.CrossEntropyLoss())
    free.fit()
    assert not torch.equal(free.model.net[0].weight, clipped.model.net[0].weight)


def test_accumulation_averages_exactly():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(64, 10, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    whole = Trainer(Classifier(), config(epochs=1), DataLoader(TensorDataset(x, y), batch_size=32), loss_fn=nn.CrossEntropyLoss())
    parts = Trainer(Classifier(), config(epochs=1, accumulate_grad_batches=4), DataLoader(TensorDataset(x, y), batch_size=8),
                    loss_fn=nn.CrossEntropyLoss())
    whole.fit()
    parts.fit()
    for a, b in zip(whole.model.parameters(), parts.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_custom_forward_and_backward_functions():
    calls = []

    def forward(model, batch):
        inputs, targets = batch
        calls.append("forward")
        return model(inputs), targets

    def backward(loss, model, optimizer):
        calls.append("backward")
        loss.backward()

    train, val = loaders()
    history = Trainer(Classifier(), config(custom_forward_fn=forward, custom_backward_fn=backward), train, val,
                      loss_fn=nn.CrossEntropyLoss()).fit()
    assert calls.count("backward") == 12 and calls.count("forward") == 12 + 2 * 2  # 6 train + 2 val batches x 2 epochs
    assert len(history["val_metrics"]["loss"]) == 2


def test_save_and_load_checkpoint_with_its_keys(tmp_path):
    train, val = loaders()
    trainer = Trainer(Classifier(), config(), train, val, loss_fn=nn.CrossEntropyLoss())
    trainer.fit()
    trainer.save_checkpoint(str(tmp_path / "ck.pt"), additional_info={"note": "after two epochs"})
    fresh = Trainer(Classifier(), config(), train, val, loss_fn=nn.CrossEntropyLoss())
    loaded = fresh.load_checkpoint(str(tmp_path / "ck.pt"), resume_training=False)
    assert {"epoch", "model_state_dict", "optimizer_state_dict"} <= set(loaded)
    assert loaded["additional_info"] == {"note": "after two epochs"}
    assert torch.equal(fresh.model.net[0].weight, trainer.model.net[0].weight) and fresh.current_epoch == 0
    resumed = Trainer(Classifier(), config(), train, val, loss_fn=nn.CrossEntropyLoss())
    resumed.load_checkpoint(str(tmp_path / "ck.pt"))  # resume_training=True: the whole state
    assert resumed.current_epoch == 2 and resumed.global_step == trainer.global_step
    assert resumed.optimizer.state_dict()["state"][0]["step"] == trainer.optimizer.state_dict()["state"][0]["step"]


def test_resume_training_with_additional_epochs_continues_exactly(tmp_path):
    train, val = loaders()
    torch.manual_seed(0)
    first = config(epochs=2, checkpoint_dir=str(tmp_path / "ck"))
    Trainer(Classifier(), first, train, val, loss_fn=nn.CrossEntropyLoss()).fit()
    more = config(checkpoint_dir=str(tmp_path / "ck"), resume_training=True, additional_epochs=2)
    resumed = Trainer(Classifier(), more, train, val, loss_fn=nn.CrossEntropyLoss())
    with pytest.warns(UserWarning, match="different config"):  # epochs 2 -> 4 is a change, and said
        history = resumed.train()
    assert history["total_epochs"] == 4 and resumed.config.epochs == 4
    torch.manual_seed(0)  # the same initial weights as the first run's
    straight = Trainer(Classifier(), config(epochs=4), train, val, loss_fn=nn.CrossEntropyLoss())
    straight.fit()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_keep_all_checkpoints_keeps_every_epoch(tmp_path):
    train, _ = loaders()
    Trainer(Classifier(), config(epochs=4, checkpoint_dir=str(tmp_path), keep_all_checkpoints=True), train,
            loss_fn=nn.CrossEntropyLoss()).fit()
    kept = sorted(p.name for p in tmp_path.glob("last*.pt"))
    assert kept == ["last-1.pt", "last-2.pt", "last-3.pt", "last.pt"]


def test_overfit_threshold_warns_when_val_loss_runs_away():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 10, generator=gen)
    train = DataLoader(TensorDataset(x, torch.randint(0, 3, (16,), generator=gen)), batch_size=16)
    val = DataLoader(TensorDataset(-x, torch.randint(0, 3, (16,), generator=gen)), batch_size=16)
    cfg = config(epochs=30, overfit_threshold=0.1, optimizer=OptimizerConfig(lr=5e-2))
    with pytest.warns(UserWarning, match=r"Possible over-fitting at epoch \d+: val_loss .* > loss .* \+ overfit_threshold 0.1"):
        Trainer(Classifier(), cfg, train, val, loss_fn=nn.CrossEntropyLoss()).fit()


# ---------------------------------------------------------------------- the report


def test_the_report_after_fit_and_its_renderings(tmp_path, capsys):
    import io
    import json

    from treadmill.report import display_training_report, save_report_to_file

    train, val = loaders()
    trainer = Trainer(Classifier(), config(progress_bar=True, checkpoint_dir=str(tmp_path / "ck")), train, val,
                      loss_fn=nn.CrossEntropyLoss(), metric_fns={"accuracy": StandardMetrics.accuracy})
    trainer.fit()
    printed = capsys.readouterr().out
    report = trainer.report
    assert report is trainer.training_report
    assert (report.total_epochs, report.model_name, report.device, report.batch_size) == (2, "Classifier", "cpu", 16)
    assert report.total_parameters == sum(p.numel() for p in trainer.model.parameters()) == 10 * 16 + 16 + 16 * 3 + 3
    assert report.model_size_mb == pytest.approx(report.total_parameters * 4 / 2**20)
    assert report.best_metrics["val_loss"] == min(trainer.history["val_loss"])
    assert report.final_metrics["accuracy"] == trainer.history["accuracy"][-1]
    assert report.optimizer == "Adam" and report.total_checkpoints == 2  # best.safetensors, last.pt
    assert report.avg_ram_mb > 0 and trainer.hardware_monitor.get_summary()["num_gpus"] == torch.cuda.device_count()
    assert "Run report" in printed and "Hardware use: " in printed  # the report `treadmill train` prints
    assert "\x1b[" not in printed  # captured output is not a terminal: plain
    terminal = io.StringIO()
    display_training_report(report, file=terminal, terminal=True)
    assert "\x1b[" in terminal.getvalue() and "Classifier: 227 parameters" in terminal.getvalue()
    assert saved_run_is_plain(report)
    save_report_to_file(report, tmp_path / "report.json")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["total_epochs"] == 2 and saved["model_name"] == "Classifier" and "T" in saved["start_time"]


def test_the_command_line_does_not_print_the_trainers_report_too(tmp_path, capsys):
    from treadmill.cli import main

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(
        "task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 4, n_train: 64, n_valid: 16, n_test: 16}}\n"
        "model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32}\n"
        "training: {epochs: 1}\nevaluation: {samples: 0}\ndiagnostics: {enabled: false}\n")
    assert main(["train", str(config_file), "--run-dir", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.count("Run report") == 1  # the command line's, not the trainer's too


def saved_run_is_plain(report):
    """The report (with the run report inside) is JSON-ready."""
    import json

    return json.loads(json.dumps(report.to_dict(), default=float))["run"]["model"] == "Classifier"
