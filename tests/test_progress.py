"""What the terminal shows while training: the epoch summary's numbers, the bar on a terminal,
plain lines without escape codes elsewhere, the ETAs, and the bars of validation passes."""

import io
import os
import pty
import re
import threading

import pytest
import torch
from torch import nn

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.training.epoch_summary import (
    best_of,
    epoch_line,
    epoch_table,
    format_duration,
    format_value,
    summary_rows,
)
from treadmill.training.history import new_history, record_epoch
from treadmill.training.progress import ProgressReporter, progress_task

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def history_of(*epochs):
    """A trainer history from (train metrics, val metrics) pairs, one per epoch."""
    history = new_history()
    for train, valid in epochs:
        record_epoch(history, {**train, **valid})
    return history


def test_summary_rows_keep_loss_the_monitored_metric_with_its_best_and_the_headline():
    history = history_of(
        ({"loss": 2.0}, {"val_loss": 1.9, "val_exact_match": 0.30, "val_wer": 0.6}),
        ({"loss": 1.5}, {"val_loss": 1.7, "val_exact_match": 0.42, "val_wer": 0.5}),
        ({"loss": 1.2}, {"val_loss": 1.8, "val_exact_match": 0.40, "val_wer": 0.45}),
    )
    metrics = {"loss": 1.2, "token_accuracy": 0.9, "perplexity": 3.3, "val_loss": 1.8, "val_exact_match": 0.40,
               "val_wer": 0.45, "val_bleu": 50.0, "val_chrf": 60.0}
    rows = summary_rows(metrics, history, "val_exact_match", "max", headline=("wer",))
    assert [r.name for r in rows] == ["loss", "exact_match", "wer"]  # nothing else of the eight
    loss, monitored, wer = rows
    assert (loss.train, loss.valid, loss.monitored) == (1.2, 1.8, False)
    assert monitored.monitored and (monitored.best, monitored.best_epoch, monitored.new_best) == (0.42, 2, False)
    assert (wer.train, wer.valid) == (None, 0.45)
    # without a named headline the first of DEFAULT_HEADLINE present is shown
    assert [r.name for r in summary_rows(metrics, history, "val_loss", "min")] == ["loss", "exact_match"]
    best = summary_rows(metrics, history, "val_loss", "min")[0]
    assert (best.best, best.best_epoch, best.new_best) == (1.7, 2, False)


def test_best_of_counts_ties_for_the_earliest_epoch_and_skips_epochs_without_the_metric():
    history = history_of(({"loss": 1.0}, {}), ({"loss": 0.5}, {"val_acc": 0.8}), ({"loss": 0.4}, {"val_acc": 0.8}))
    assert best_of(history, "val_acc", "max") == (0.8, 2)
    assert best_of(history, "loss", "min") == (0.4, 3)
    assert best_of(history, "val_missing", "min") is None
    rows = summary_rows({"loss": 0.4, "val_acc": 0.8}, history, "val_acc", "max")
    assert rows[1].best_epoch == 2 and not rows[1].new_best  # a tie is no new best


def test_epoch_line_is_one_plain_line_with_the_figures():
    history = history_of(({"loss": 2.0}, {"val_loss": 1.9, "val_exact_match": 0.3}),
                         ({"loss": 1.5}, {"val_loss": 1.7, "val_exact_match": 0.425}))
    rows = summary_rows({"loss": 1.5, "val_loss": 1.7, "val_exact_match": 0.425}, history, "val_exact_match", "max")
    assert epoch_line("Epoch 2/4  12.4s", rows) == (
        "Epoch 2/4  12.4s  loss 1.5000 (val 1.7000)  val_exact_match 42.50% [best 42.50% @ epoch 2, new best]"
    )


def test_number_and_duration_formats():
    assert format_value("val_wer", 0.1234) == "12.34%" and format_value("gen_token_accuracy", 0.5) == "50.00%"
    assert format_value("per_nostress", 0.25) == "25.00%"
    assert format_value("loss", 1.23456) == "1.2346" and format_value("lr", 3e-4) == "0.0003"
    assert format_value("loss", None) == "-" and format_value("loss", float("nan")) == "nan"
    assert [format_duration(s) for s in (4.04, 59.9, 61, 3599, 3725)] == ["4.0s", "59.9s", "1:01", "59:59", "1:02:05"]


def test_epoch_table_has_a_row_per_metric_and_the_best_column():
    from rich.console import Console

    history = history_of(({"loss": 1.0}, {"val_loss": 0.9}))
    rows = summary_rows({"loss": 1.0, "val_loss": 0.9}, history, "val_loss", "min")
    out = io.StringIO()
    Console(file=out, width=80).print(epoch_table("Epoch 1/2  3.0s", rows))
    lines = out.getvalue().splitlines()
    assert lines[0].strip() == "Epoch 1/2  3.0s"
    header = next(line for line in lines if "train" in line)
    assert header.index("train") < header.index("valid") < header.index("best so far")
    row = next(line for line in lines if "loss (monitored)" in line)
    assert "1.0000" in row and "0.9000" in row and "0.9000 @ epoch 1, new best" in row


def drive(reporter, clock, batches=10, epochs=2):
    """Two epochs of `batches`, a log every 2 batches, each batch 1 s, validation 5 s."""
    for epoch in range(epochs):
        reporter.start_epoch(epoch, epochs, batches)
        for done in range(1, batches + 1):
            clock.now += 1.0
            if done % 2 == 0:
                reporter.update(done, loss=1.0 / (epoch + done), lr=1e-3, samples_per_s=32.0, step=epoch * batches + done)
        clock.now += 5.0
        reporter.end_epoch({"loss": 0.5, "val_loss": 0.6 - 0.1 * epoch},
                           history_of(*[({"loss": 0.5}, {"val_loss": 0.6 - 0.1 * e}) for e in range(epoch + 1)]))


def test_plain_output_has_no_escape_codes_and_gives_exact_etas():
    clock, out = FakeClock(), io.StringIO()
    reporter = ProgressReporter(stream=out, terminal=False, plain_every_s=4.0, clock=clock)
    drive(reporter, clock)
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    # a progress line at most every 4 s (batches 4 and 8 of each epoch), one summary per epoch
    assert [line.split("  ")[1] for line in lines if line.startswith("epoch ")] == ["batch 4/10", "batch 8/10"] * 2
    first = lines[0]
    # 1 s a batch: 6 batches left in the epoch, the next epoch's 10 more
    assert first.endswith("ETA 6.0s  run ETA 16.0s") and "loss 0.2500  lr 1.00e-03  32 samples/s" in first
    second_epoch = [line for line in lines if line.startswith("epoch 2/2")][0]
    assert second_epoch.endswith("ETA 6.0s  run ETA 6.0s")  # the last epoch: the run ends with it
    summaries = [line for line in lines if line.startswith("Epoch ")]
    assert summaries == [
        "Epoch 1/2  15.0s  run ETA 15.0s  loss 0.5000 (val 0.6000) [best 0.6000 @ epoch 1, new best]",
        "Epoch 2/2  15.0s  loss 0.5000 (val 0.5000) [best 0.5000 @ epoch 2, new best]",
    ]


def test_max_steps_shortens_the_run_eta():
    clock, out = FakeClock(), io.StringIO()
    reporter = ProgressReporter(stream=out, terminal=False, plain_every_s=0.0, clock=clock, max_steps=12)
    reporter.start_epoch(0, 5, 10)
    for done in (2, 4):
        clock.now += 2.0
        reporter.update(done, 1.0, 1e-3, 32.0, step=done)
    # one step a second; 8 steps to max_steps, though 5 epochs of 10 would take 46 s more
    assert out.getvalue().splitlines()[-1].endswith("ETA 6.0s  run ETA 8.0s")


def test_terminal_output_draws_a_bar_and_a_table():
    clock, out = FakeClock(), io.StringIO()
    reporter = ProgressReporter(stream=out, terminal=True, width=120, clock=clock)
    assert reporter.interactive
    drive(reporter, clock, epochs=1)
    raw = out.getvalue()
    assert "\x1b[" in raw  # colours and cursor control: a terminal's output
    text = ESCAPE.sub("", raw)
    assert "Epoch 1/1" in text and "10/10" in text and "loss 0.1000  lr 1.00e-03  32 samples/s" in text
    assert "ETA 0.0s" in text and "━" in text  # the bar itself
    table = text[text.rindex("Epoch 1/1  15.0s"):]
    assert "loss (monitored)" in table and "0.6000 @ epoch 1, new best" in table


def test_disabled_progress_prints_only_summaries_and_quiet_prints_nothing():
    clock, out = FakeClock(), io.StringIO()
    drive(ProgressReporter(enabled=False, stream=out, terminal=True, clock=clock), clock)
    assert [line[:9] for line in out.getvalue().splitlines()] == ["Epoch 1/2", "Epoch 2/2"]
    assert "\x1b" not in out.getvalue()  # no bar, so no table either: plain summaries
    silent = io.StringIO()
    drive(ProgressReporter(quiet=True, stream=silent, terminal=True, clock=clock), clock)
    assert silent.getvalue() == ""


def test_progress_task_is_silent_when_quick_and_reports_when_slow():
    clock, out = FakeClock(), io.StringIO()
    with progress_task("decoding test", 100, "rows", stream=out, terminal=False, every_s=10.0, clock=clock) as bar:
        bar.advance(50)
    assert out.getvalue() == ""  # a quick pass says nothing
    with progress_task("decoding test", 100, "rows", stream=out, terminal=False, every_s=10.0, clock=clock) as bar:
        for _ in range(4):
            clock.now += 5.0
            bar.advance(25)
    assert out.getvalue().splitlines() == [
        "decoding test: 50/100 rows, 5.0 rows/s, ETA 10.0s",
        "decoding test: 100/100 rows, 5.0 rows/s, ETA 0.0s",
        "decoding test: 100 rows in 20.0s",
    ]
    tty = io.StringIO()
    with progress_task("decoding test", 100, "rows", stream=tty, terminal=True, width=100, clock=clock) as bar:
        clock.now += 5.0
        bar.advance(25)
    drawn = ESCAPE.sub("", tty.getvalue())
    assert "\x1b[" in tty.getvalue() and "decoding test" in drawn
    assert "25/100" in drawn and "rows  5.0/s  ETA 15.0s" in drawn  # 75 rows left at 5 a second


def tiny_trainer(**kwargs):
    torch.manual_seed(0)
    data = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
    config = TrainingConfig(epochs=2, log_frequency=1, optimizer=OptimizerConfig("SGD", lr=0.05), **kwargs)
    return Trainer(nn.Linear(3, 1), config, data, data, loss_fn=nn.MSELoss())


def test_trainer_shows_validation_as_its_own_bar_and_a_table_per_epoch():
    trainer = tiny_trainer()
    out = io.StringIO()
    trainer.progress = ProgressReporter(stream=out, terminal=True, width=120, monitor="val_loss")
    history = trainer.fit()
    text = ESCAPE.sub("", out.getvalue())
    assert "validating" in text and "Epoch 2/2" in text
    tables = [line for line in text.splitlines() if line.strip().startswith("loss (monitored)")]
    assert len(tables) == 2
    assert f"{history['val_loss'][1]:.4f}" in tables[1]


def test_trainer_on_a_pipe_prints_one_plain_summary_line_per_epoch(capsys):
    trainer = tiny_trainer()
    history = trainer.fit()
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert len(lines) == 2
    assert f"loss {history['loss'][1]:.4f} (val {history['val_loss'][1]:.4f})" in lines[1]


def test_a_real_terminal_is_detected_and_gets_the_bar_and_a_pipe_does_not():
    """The reporter asks its stream: a pseudo-terminal's end gets the live bar, a pipe plain lines."""
    leader, follower = pty.openpty()
    terminal = os.fdopen(follower, "w", encoding="utf-8")
    received: list[bytes] = []

    def drain() -> None:  # read the terminal while it is written, so a full pty buffer never blocks
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the writing side was closed
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    read_end, write_end = os.pipe()
    pipe = os.fdopen(write_end, "w", encoding="utf-8")
    try:
        for stream in (terminal, pipe):
            clock = FakeClock()
            reporter = ProgressReporter(stream=stream, plain_every_s=0.0, clock=clock, width=100)
            drive(reporter, clock, batches=4, epochs=1)
            stream.flush()
        pipe.close()
        on_pipe = os.read(read_end, 1 << 20).decode()
    finally:
        terminal.close()
        reader.join(timeout=10)
        os.close(leader)
        os.close(read_end)
    on_terminal = b"".join(received).decode("utf-8", "replace")
    assert "\x1b[" in on_terminal and "━" in on_terminal and "loss (monitored)" in ESCAPE.sub("", on_terminal)
    assert "\x1b" not in on_pipe and "━" not in on_pipe
    assert on_pipe.splitlines()[-1].startswith("Epoch 1/1  9.0s  loss 0.5000 (val 0.6000)")


@pytest.mark.parametrize("resumed_at", [0, 6])
def test_bar_starts_at_the_batches_done_before_a_resume(resumed_at):
    clock, out = FakeClock(), io.StringIO()
    reporter = ProgressReporter(stream=out, terminal=False, plain_every_s=0.0, clock=clock)
    reporter.start_epoch(0, 1, 10, done=resumed_at)
    clock.now += 2.0
    reporter.update(resumed_at + 2, 1.0, 1e-3, 32.0)
    # the rate counts the two batches trained since the start, not those before the resume
    assert out.getvalue().splitlines()[0].endswith(f"ETA {float(10 - resumed_at - 2):.1f}s  run ETA {float(10 - resumed_at - 2):.1f}s")
