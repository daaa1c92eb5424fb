"""`MetricsTracker`: per-batch metric values in, exact epoch means, best values and history out.

pytorch-treadmill's tracker of the same name averaged an epoch over only its last `window_size`
batches; here `window_size` only smooths `get_current_metrics` (the live display), and
`end_epoch` is the mean over every batch of the epoch, weighted by `n` when batch sizes differ.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from treadmill.training.metric_mode import infer_mode

__all__ = ["MetricsTracker"]


class MetricsTracker:
    """Batch metrics per mode ("train", "val") reduced to epoch means, with the best value of each."""

    def __init__(self, window_size: int = 100) -> None:
        self.window_size = window_size
        self.reset()

    def reset(self) -> None:
        """Forget everything tracked."""
        self.epoch_metrics: dict[str, list[float]] = defaultdict(list)
        self.batch_metrics: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self.window_size))
        self.best_metrics: dict[str, float] = {}
        self._sums: dict[str, list[float]] = {}  # key -> [weighted sum, total weight] of this epoch

    def update(self, metrics: dict[str, Any], mode: str = "train", n: float = 1.0) -> None:
        """Record one batch's metrics for `mode`; `n` weights the batch (its size) in the epoch mean."""
        for name, value in metrics.items():
            key = f"{mode}_{name}"
            value = float(value)
            self.batch_metrics[key].append(value)
            total = self._sums.setdefault(key, [0.0, 0.0])
            total[0] += value * n
            total[1] += n

    def end_epoch(self) -> dict[str, float]:
        """The epoch's means (`train_loss`, `val_accuracy`, ...), recorded and compared with the best."""
        summary = {key: weighted / weight for key, (weighted, weight) in self._sums.items() if weight > 0}
        for key, value in summary.items():
            self.epoch_metrics[key].append(value)
            best = self.best_metrics.get(key)
            better = best is None or (value < best if infer_mode(key) == "min" else value > best)
            if better:
                self.best_metrics[key] = value
        self._sums = {}
        for values in self.batch_metrics.values():
            values.clear()
        return summary

    def _of_mode(self, table: dict[str, Any], mode: str) -> dict[str, Any]:
        prefix = f"{mode}_"
        return {key[len(prefix):]: value for key, value in table.items() if key.startswith(prefix)}

    def get_current_metrics(self, mode: str = "train") -> dict[str, float]:
        """The mean of the last `window_size` batches of this epoch, per metric (for live display)."""
        return {name: sum(values) / len(values) for name, values in self._of_mode(self.batch_metrics, mode).items() if values}

    def get_epoch_metrics(self, mode: str = "train") -> dict[str, list[float]]:
        """Every epoch's mean so far, per metric."""
        return {name: list(values) for name, values in self._of_mode(self.epoch_metrics, mode).items()}

    def get_best_metrics(self, mode: str = "train") -> dict[str, float]:
        """The best epoch mean so far, per metric (lowest for losses and errors, else highest)."""
        return self._of_mode(self.best_metrics, mode)

    def is_best_epoch(self, metric_name: str, mode: str = "val") -> bool:
        """Whether the latest epoch holds the best value of the metric."""
        key = f"{mode}_{metric_name}"
        return bool(self.epoch_metrics.get(key)) and self.epoch_metrics[key][-1] == self.best_metrics.get(key)
