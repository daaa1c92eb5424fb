"""Progress output: a live bar on a terminal, plain lines otherwise, one summary line per epoch."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressReporter", "format_metrics"]


def format_metrics(metrics: dict[str, float]) -> str:
    """'loss 0.1234  val_loss 0.2345' with compact number formatting."""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{key} {value:.4f}")
        else:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


class ProgressReporter:
    """Shows training progress; a tqdm bar when the stream is a terminal, else plain lines."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.quiet = quiet  # no output at all (processes other than rank 0)
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar: Any = None
        self._epoch_start = 0.0
        self._last_plain = 0.0

    def start_epoch(self, epoch: int, epochs: int, total_batches: int | None) -> None:
        """Begin showing progress of one epoch."""
        self._epoch_start = self._last_plain = time.perf_counter()
        self._epoch, self._epochs, self._total = epoch, epochs, total_batches
        if self.interactive:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is in the `full` extra; fall back to plain lines
                self.interactive = False
                return
            self._bar = tqdm(total=total_batches, desc=f"Epoch {epoch + 1}/{epochs}", leave=False, file=self.stream, dynamic_ncols=True)

    def update(self, batches_done: int, loss: float, lr: float, samples_per_s: float) -> None:
        """Report the running state at a logging step."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.n = batches_done
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{samples_per_s:.0f}", refresh=False)
            self._bar.refresh()
            return
        # Plain lines at most every 10 s so logs stay readable when stdout is a file.
        now = time.perf_counter()
        if now - self._last_plain < 10.0:
            return
        self._last_plain = now
        total = f"/{self._total}" if self._total else ""
        print(
            f"epoch {self._epoch + 1}/{self._epochs}  batch {batches_done}{total}  loss {loss:.4f}  lr {lr:.2e}  "
            f"{samples_per_s:.0f} samples/s",
            file=self.stream,
            flush=True,
        )

    def end_epoch(self, metrics: dict[str, float]) -> None:
        """Close the bar and print the epoch's summary line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.quiet:
            return
        elapsed = time.perf_counter() - self._epoch_start
        print(f"Epoch {self._epoch + 1}/{self._epochs}  {format_metrics(metrics)}  ({elapsed:.1f}s)", file=self.stream, flush=True)
