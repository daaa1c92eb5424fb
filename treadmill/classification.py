"""Training sequence classifiers: batches {"src", "src_padding_mask", "label", "index"} -> class logits.

Cross-entropy on `label`; every evaluation also counts a confusion matrix over the whole loader
(`trainer.confusion`), from which macro-F1 is computed exactly (an F1 is not a mean of per-batch F1s).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from treadmill.config import TrainingConfig
from treadmill.metrics.confusion import confusion_matrix, macro_f1
from treadmill.trainer import Trainer

__all__ = ["ClassificationTrainer"]


class ClassificationTrainer(Trainer):
    """A Trainer for classification batches; metrics `accuracy` and (in evaluation) `macro_f1`."""

    def __init__(self, model: nn.Module, config: TrainingConfig, train_dataloader: Iterable[Any] | None,
                 val_dataloader: Iterable[Any] | None, num_labels: int, callbacks: Sequence[Any] | None = None) -> None:
        super().__init__(model, config, train_dataloader, val_dataloader, callbacks=callbacks)
        self.num_labels = num_labels
        self.confusion: Tensor | None = None  # the last evaluation's (K, K) counts, [true, predicted]
        self._counting: Tensor | None = None

    def _forward_pass(self, batch: Any) -> Tensor:
        return self.model(batch["src"], batch["src_padding_mask"])

    def _targets(self, batch: Any) -> Tensor:
        return batch["label"]

    def _compute_loss(self, batch: Any, predictions: Tensor) -> Tensor:
        return F.cross_entropy(predictions.float(), batch["label"])

    def _compute_metrics(self, batch: Any, predictions: Tensor) -> dict[str, Any]:
        predicted = predictions.detach().argmax(dim=-1)
        if self._counting is not None:  # inside evaluate(): count the whole loader
            self._counting += confusion_matrix(predicted, batch["label"], self.num_labels)
        return {"accuracy": (predicted == batch["label"]).float().mean()}

    def evaluate(self, dataloader: Iterable[Any] | None = None, prefix: str = "") -> dict[str, float]:
        """Loss, accuracy and macro-F1 over a loader; the confusion matrix is kept in `self.confusion`."""
        self._counting = torch.zeros(self.num_labels, self.num_labels, dtype=torch.long)
        try:
            metrics = super().evaluate(dataloader, prefix)
            counts = self._counting
        finally:
            self._counting = None
        if self.dist.enabled:  # each rank counted its shard
            counts = self._all_reduce(counts.to(self.device)).cpu()
        self.confusion = counts
        metrics[f"{prefix}macro_f1"] = macro_f1(counts)
        return metrics
