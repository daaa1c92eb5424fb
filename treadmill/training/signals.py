"""Graceful stop on SIGTERM / SIGINT: finish the optimizer step, save, exit; twice exits at once."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulStop", "TrainingInterrupted"]


class TrainingInterrupted(SystemExit):
    """Raised after a signal once the training state is saved; its code is 128 + the signal."""


class GracefulStop:
    """Context manager that records SIGTERM/SIGINT instead of dying mid-step.

    The first signal sets `requested`; the loop checks it after each optimizer step. A second
    signal restores the default handler and re-delivers itself, so the process ends at once.
    Outside the main thread (where handlers cannot be installed) it does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            self._restore()
            os.kill(os.getpid(), signum)
            return
        self.requested = signum
        print(
            f"\nReceived {signal.Signals(signum).name}: finishing the current optimizer step, then saving. "
            "Send it again to exit at once.",
            flush=True,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._restore()
