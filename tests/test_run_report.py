"""The end-of-run report: its figures come from the trainer, and it renders on a terminal and in a log."""

import io
import re

import torch
from torch import nn

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks import Callback
from treadmill.run_report import RunReport, print_run_report, report_lines, run_report
from treadmill.training.progress import ProgressReporter

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def trained(tmp_path, monitor="val_loss"):
    torch.manual_seed(0)
    data = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(3)]
    config = TrainingConfig(epochs=3, progress_bar=False, log_frequency=1, monitor=monitor,
                            checkpoint_dir=str(tmp_path / "checkpoints"), optimizer=OptimizerConfig("SGD", lr=0.05))
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    model[0].weight.requires_grad_(False)  # 12 frozen parameters
    trainer = Trainer(model, config, data, data, loss_fn=nn.MSELoss())
    trainer.fit()
    return trainer


def test_report_figures_come_from_the_trainer(tmp_path):
    trainer = trained(tmp_path)
    report = run_report(trainer, train_seconds=12.5, results={"test": {"loss": 0.5, "exact_match": 0.25}},
                        run_dir=tmp_path)
    assert (report.model, report.parameters, report.trainable_parameters) == ("Sequential", 21, 9)
    assert report.parameter_bytes == 21 * 4 and report.precision == "fp32" and report.device.startswith("cpu")
    assert (report.epochs, report.steps, report.train_seconds) == (3, 9, 12.5)
    val_losses = trainer.history["val_loss"]
    best = min(val_losses)
    assert (report.monitor, report.best, report.best_epoch) == ("val_loss", best, val_losses.index(best) + 1)
    assert report.last_epoch == {"loss": trainer.history["loss"][-1], "val_loss": val_losses[-1]}
    assert report.weights == {"best": str(tmp_path / "checkpoints" / "best.safetensors"),
                              "last": str(tmp_path / "checkpoints" / "last.pt")}


def test_report_without_a_run_time_takes_the_training_time_the_progress_reporter_measured(tmp_path):
    now = [50.0]

    class Tick(Callback):  # each epoch takes 21 s on this clock
        def on_epoch_end(self, trainer, epoch, metrics):
            now[0] += 21.0

    torch.manual_seed(0)
    data = [(torch.randn(8, 3), torch.randn(8, 1))]
    trainer = Trainer(nn.Linear(3, 1), TrainingConfig(epochs=2, progress_bar=False), data, loss_fn=nn.MSELoss(),
                      callbacks=[Tick()])
    trainer.progress = ProgressReporter(enabled=False, stream=io.StringIO(), clock=lambda: now[0])
    trainer.fit()
    now[0] += 100.0  # time after fit() is not training time
    report = run_report(trainer)
    assert report.train_seconds == 42.0
    assert report.monitor is None and report.best is None  # no validation: no val_loss to be best at


def test_plain_report_lines():
    report = RunReport(model="TransformerSeq2Seq", parameters=1_234_567, trainable_parameters=1_234_567,
                       parameter_bytes=4_938_268, device="cpu (2 threads)", precision="fp32", epochs=4, steps=4200,
                       train_seconds=750.0, monitor="val_exact_match", best=0.6241, best_epoch=4,
                       last_epoch={"loss": 1.0, "val_loss": 1.1}, results={"test": {"exact_match": 0.6, "wer": 0.4}},
                       weights={"evaluated": "runs/g2p/checkpoints/best.safetensors"}, run_dir="runs/g2p")
    assert report_lines(report) == [
        "Run report",
        "  model:       TransformerSeq2Seq: 1,234,567 parameters (4.7 MB)",
        "  hardware:    cpu (2 threads), fp32",
        "  training:    4 epochs, 4,200 steps in 12:30 (5.6 steps/s)",
        "  best:        val_exact_match 62.41% at epoch 4",
        "  last epoch:  loss 1.0000  val_loss 1.1000",
        "  weights:     runs/g2p/checkpoints/best.safetensors (evaluated)",
        "  test:        exact_match 60.0%  wer 40.0%",
        "Run directory: runs/g2p",
    ]
    out = io.StringIO()
    print_run_report(report, file=out)  # a StringIO is no terminal: the same plain lines
    assert out.getvalue().splitlines() == report_lines(report) and "\x1b" not in out.getvalue()


def test_terminal_report_is_a_panel_with_the_results_table(tmp_path):
    trainer = trained(tmp_path)
    report = run_report(trainer, train_seconds=3.0, results={"valid": {"loss": 0.25}, "test": {"loss": 0.5}},
                        run_dir="runs/x")
    out = io.StringIO()
    print_run_report(report, file=out, terminal=True, width=100)
    raw = out.getvalue()
    text = ESCAPE.sub("", raw)
    assert "\x1b[" in raw and text.startswith("╭─ Run report")
    assert "Sequential: 21 parameters, 9 trainable (84 B)" in text and "runs/x" in text
    rows = [line for line in text.splitlines() if "│ valid" in line or "│ test" in line]
    assert len(rows) == 2 and "0.25" in rows[0] and "0.5" in rows[1]
