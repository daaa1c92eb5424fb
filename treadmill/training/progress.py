"""Progress output: a live bar on a terminal, plain lines otherwise, a summary at each epoch end.

On a terminal (the stream's `isatty()`, rich installed) one live rich display shows the epoch's
batches with loss, learning rate, speed, the epoch's ETA and the whole run's; validation and
decoding passes appear as bars of their own under it and vanish when they finish; each epoch
ends with a small table (`treadmill.training.epoch_summary`). Anywhere else (CI logs, files,
rich missing) the same information comes as plain lines without escape codes: a progress line at
most every `plain_every_s` seconds, one summary line per epoch.

`progress_task(...)` is the same counted bar for work outside a training loop (decoding a test
split, generating many lines); the library's loops take a per-batch callback, not a bar, so they
never depend on how (or whether) progress is shown.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from treadmill.training.epoch_summary import epoch_line, epoch_table, format_duration, summary_rows

__all__ = ["ProgressReporter", "Counter", "progress_task", "is_terminal"]

Clock = Callable[[], float]


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal (and rich, which draws on it, is installed)."""
    try:
        import rich  # noqa: F401
    except ImportError:  # rich is in the `full` extra; without it every stream gets plain lines
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Counter:
    """A counted task: `advance(n)` after each piece of work. This base class shows nothing."""

    def advance(self, n: int = 1) -> None:
        """Count `n` more units done."""

    def close(self) -> None:
        """The task is over."""


class _PlainCounter(Counter):
    """Plain lines, at most one every `every_s` seconds; a closing line only if one was printed,
    so a quick pass stays silent and a slow one says when it is done."""

    def __init__(self, description: str, total: int | None, unit: str, stream: TextIO,
                 every_s: float, clock: Clock) -> None:
        self.description, self.total, self.unit, self.stream = description, total, unit, stream
        self.every_s, self.clock = every_s, clock
        self.done, self.started = 0, clock()
        self._last, self._printed = self.started, False

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last, self._printed = now, True
            print(f"{self.description}: {self._position(now)}", file=self.stream, flush=True)

    def _position(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        text = f"{self.done:,}{f'/{self.total:,}' if self.total else ''} {self.unit}, {rate:,.1f} {self.unit}/s"
        if self.total and rate > 0:
            text += f", ETA {format_duration((self.total - self.done) / rate)}"
        return text

    def close(self) -> None:
        if self._printed:
            elapsed = self.clock() - self.started
            print(f"{self.description}: {self.done:,} {self.unit} in {format_duration(elapsed)}", file=self.stream, flush=True)


class _RichCounter(Counter):
    """One task of a live rich Progress, with its rate and ETA; removed from the display when closed."""

    def __init__(self, progress: Any, description: str, total: int | None, unit: str, owns: bool,
                 clock: Clock) -> None:
        self.progress, self.owns, self.total, self.unit, self.clock = progress, owns, total, unit, clock
        self.done, self.started = 0, clock()
        self.task = progress.add_task(description, total=total, stats=unit)

    def advance(self, n: int = 1) -> None:
        self.done += n
        elapsed = self.clock() - self.started
        stats = self.unit
        if elapsed > 0 and self.done:
            rate = self.done / elapsed
            stats += f"  {rate:,.1f}/s"
            if self.total:
                stats += f"  ETA {format_duration(max(self.total - self.done, 0) / rate)}"
        self.progress.update(self.task, advance=n, stats=stats, refresh=True)  # per batch: cheap, and exact

    def close(self) -> None:
        self.progress.remove_task(self.task)
        if self.owns:
            self.progress.stop()


def _console(stream: TextIO, width: int | None) -> Any:
    from rich.console import Console

    return Console(file=stream, force_terminal=True, width=width, highlight=False)


def _live_progress(console: Any, stream: TextIO, clock: Clock | None) -> Any:
    """A transient rich Progress: description, bar, done/total, a free text field, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # Output printed while the bar is live goes above it, but only for the real process streams.
    redirect = stream is sys.stdout or stream is sys.stderr
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=console, transient=True,
                    refresh_per_second=4, redirect_stdout=redirect, redirect_stderr=redirect, get_time=clock)


@contextlib.contextmanager
def progress_task(description: str, total: int | None, unit: str = "batches", *, stream: TextIO | None = None,
                  terminal: bool | None = None, enabled: bool = True, every_s: float = 10.0,
                  width: int | None = None, clock: Clock = time.perf_counter) -> Iterator[Counter]:
    """A counted progress display for one long task: a transient bar on a terminal, plain lines
    (at most one per `every_s` seconds) elsewhere; `terminal` None asks the stream."""
    stream = stream or sys.stderr
    counter: Counter
    if not enabled:
        counter = Counter()
    elif is_terminal(stream) if terminal is None else terminal:
        progress = _live_progress(_console(stream, width), stream, clock)
        progress.start()
        counter = _RichCounter(progress, description, total, unit, owns=True, clock=clock)
    else:
        counter = _PlainCounter(description, total, unit, stream, every_s, clock)
    try:
        yield counter
    finally:
        counter.close()


class ProgressReporter:
    """The training loop's progress: the epoch bar with loss, LR, speed and ETAs, bars for the
    validation passes, and the epoch summary (a table on a terminal, a line elsewhere).

    `enabled=False` keeps only the epoch summaries; `quiet=True` shows nothing (every process
    but rank 0). `monitor`/`mode` name the metric whose best the summary tracks; `headline` the
    task's own figures (see `epoch_summary.summary_rows`). `terminal` None asks the stream.
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, quiet: bool = False, *,
                 monitor: str | None = "val_loss", mode: str = "min", headline: Sequence[str] = (),
                 max_steps: int | None = None, terminal: bool | None = None, width: int | None = None,
                 plain_every_s: float = 10.0, clock: Clock = time.perf_counter) -> None:
        self.stream = stream or sys.stdout
        self.enabled, self.quiet = enabled and not quiet, quiet
        self.monitor, self.mode, self.headline, self.max_steps = monitor, mode, tuple(headline), max_steps
        self.plain_every_s, self.clock = plain_every_s, clock
        self.interactive = self.enabled and (is_terminal(self.stream) if terminal is None else terminal)
        self._console = _console(self.stream, width) if self.interactive else None
        self._progress: Any = None
        self._task: Any = None
        self._run_started: float | None = None
        self._last_end: float | None = None  # when the last epoch ended
        self._epoch_seconds: list[float] = []  # wall time of each finished epoch, validation included
        self._first_step: tuple[int, float] | None = None
        self._epoch, self._epochs = 0, 1
        self._total: int | None = None
        self._epoch_start = self._last_plain = 0.0
        self._first_batch = 0  # batches of the epoch done before it started here (resume)

    @property
    def elapsed(self) -> float:
        """Seconds of training: from the first epoch's start to the last epoch's end (to now while
        an epoch runs)."""
        if self._run_started is None:
            return 0.0
        end = self.clock() if self._progress is not None or self._last_end is None else self._last_end
        return end - self._run_started

    def start_epoch(self, epoch: int, epochs: int, total_batches: int | None, done: int = 0) -> None:
        """Begin showing progress of one epoch (0-based `epoch` of `epochs`; `done` batches of it
        were trained before a resume)."""
        now = self.clock()
        self._run_started = now if self._run_started is None else self._run_started
        self._epoch_start = self._last_plain = now
        self._epoch, self._epochs, self._total, self._first_batch = epoch, epochs, total_batches, done
        if self.interactive:
            self._progress = _live_progress(self._console, self.stream, self.clock)
            self._progress.start()
            self._task = self._progress.add_task(f"Epoch {epoch + 1}/{epochs}", total=total_batches,
                                                 completed=done, stats="")

    def update(self, batches_done: int, loss: float, lr: float, samples_per_s: float, step: int | None = None) -> None:
        """Report the running state at a logging step (`step`: the optimizer steps so far)."""
        if not self.enabled:
            return
        now = self.clock()
        if step is not None and self._first_step is None:
            self._first_step = (step, now)
        stats = f"loss {loss:.4f}  lr {lr:.2e}  {samples_per_s:,.0f} samples/s"
        etas = self._etas(batches_done, step, now)
        if self._progress is not None:
            eta_text = "  ".join(f"{name} {format_duration(value)}" for name, value in etas.items())
            self._progress.update(self._task, completed=batches_done, stats=f"{stats}  {eta_text}".rstrip())
            return
        if now - self._last_plain < self.plain_every_s:  # plain lines stay few, so logs stay readable
            return
        self._last_plain = now
        total = f"/{self._total}" if self._total else ""
        eta_text = "".join(f"  {name} {format_duration(value)}" for name, value in etas.items())
        print(f"epoch {self._epoch + 1}/{self._epochs}  batch {batches_done}{total}  {stats}{eta_text}",
              file=self.stream, flush=True)

    def _etas(self, batches_done: int, step: int | None, now: float) -> dict[str, float]:
        """Time left in the epoch ("ETA") and in the run ("run ETA"), from the rates so far."""
        counted = batches_done - self._first_batch
        if not self._total or counted <= 0 or now <= self._epoch_start:
            return {}
        per_batch = (now - self._epoch_start) / counted
        epoch_left = (self._total - batches_done) * per_batch
        later_epochs = self._epochs - self._epoch - 1
        per_epoch = sum(self._epoch_seconds) / len(self._epoch_seconds) if self._epoch_seconds else self._total * per_batch
        run_left = epoch_left + later_epochs * per_epoch
        if self.max_steps is not None and step is not None and self._first_step is not None:
            first_step, first_time = self._first_step
            if step > first_step:  # max_steps may end the run before the epochs do
                run_left = min(run_left, (self.max_steps - step) * (now - first_time) / (step - first_step))
        return {"ETA": epoch_left, "run ETA": max(run_left, epoch_left if later_epochs else 0.0)}

    @contextlib.contextmanager
    def track(self, description: str, total: int | None, unit: str = "batches") -> Iterator[Counter]:
        """A counted pass (validation, decoding): a bar under the epoch's on a terminal, plain
        lines when it is slow elsewhere, nothing when progress is off."""
        if not self.enabled:
            yield Counter()
        elif self._progress is not None:
            live = _RichCounter(self._progress, description, total, unit, owns=False, clock=self.clock)
            try:
                yield live
            finally:
                live.close()
        else:
            with progress_task(description, total, unit, stream=self.stream, terminal=self.interactive,
                               every_s=self.plain_every_s, clock=self.clock) as counter:
                yield counter

    def end_epoch(self, metrics: Mapping[str, float], history: Mapping[str, Any] | None = None) -> None:
        """Close the bar and show the epoch's summary (`history`: the trainer's, this epoch included)."""
        self.close()
        now = self._last_end = self.clock()
        self._epoch_seconds.append(now - self._epoch_start)
        if self.quiet:
            return
        rows = summary_rows(metrics, history, self.monitor, self.mode, self.headline)
        title = f"Epoch {self._epoch + 1}/{self._epochs}  {format_duration(self._epoch_seconds[-1])}"
        later = self._epochs - self._epoch - 1
        if later > 0:
            title += f"  run ETA {format_duration(later * sum(self._epoch_seconds) / len(self._epoch_seconds))}"
        if self._console is not None:
            self._console.print(epoch_table(title, rows))
        else:
            print(epoch_line(title, rows), file=self.stream, flush=True)

    def close(self) -> None:
        """Stop the live display, if one is showing (also after an exception)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = self._task = None
