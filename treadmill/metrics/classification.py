"""Metrics for classification and regression outputs, under pytorch-treadmill's names.

`StandardMetrics` takes (predictions, targets) as a Trainer's metric functions do: logits or
probabilities of shape (batch, classes), or one score per example for binary tasks, against class
indices (or one-hot rows). Each returns a Python float.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["StandardMetrics", "compute_metrics"]


def _class_indices(targets: torch.Tensor) -> torch.Tensor:
    """Class indices of targets given as indices or as one-hot / probability rows."""
    if targets.dim() > 1 and targets.size(-1) > 1:
        return targets.argmax(dim=-1)
    return targets.reshape(-1).long() if targets.dim() > 1 else targets.long()


def _predicted_classes(predictions: torch.Tensor) -> torch.Tensor:
    """argmax over classes, or a 0.5 threshold for one score per example."""
    if predictions.dim() > 1 and predictions.size(-1) > 1:
        return predictions.argmax(dim=-1)
    return (predictions.reshape(-1) > 0.5).long()


class StandardMetrics:
    """Accuracy, top-k accuracy, F1, MSE and MAE as static functions."""

    @staticmethod
    def accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> float:
        """Share of examples whose predicted class is the target class."""
        predicted, wanted = _predicted_classes(predictions.detach()), _class_indices(targets.detach())
        return float((predicted == wanted).float().mean())

    @staticmethod
    def top_k_accuracy(predictions: torch.Tensor, targets: torch.Tensor, k: int = 5) -> float:
        """Share of examples whose target is among the k highest-scored classes (k capped at the class count)."""
        k = min(k, predictions.size(-1))
        top = predictions.detach().topk(k, dim=-1).indices
        return float((top == _class_indices(targets.detach()).unsqueeze(-1)).any(dim=-1).float().mean())

    @staticmethod
    def f1_score(predictions: torch.Tensor, targets: torch.Tensor, average: str = "macro") -> float:
        """F1 over classes: "macro" (unweighted mean), "micro", "weighted", or "binary" (class 1)."""
        predicted, wanted = _predicted_classes(predictions.detach()), _class_indices(targets.detach())
        classes = int(max(int(predicted.max()), int(wanted.max())) + 1) if wanted.numel() else 0
        if average == "binary":
            labels = [1]
        elif average in ("macro", "micro", "weighted"):
            labels = list(range(classes))
        else:
            raise ValueError(f"StandardMetrics.f1_score: average={average!r}; use 'macro', 'micro', 'weighted' or 'binary'.")
        tp = torch.tensor([float(((predicted == c) & (wanted == c)).sum()) for c in labels])
        fp = torch.tensor([float(((predicted == c) & (wanted != c)).sum()) for c in labels])
        fn = torch.tensor([float(((predicted != c) & (wanted == c)).sum()) for c in labels])
        if average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        denominator = 2 * tp + fp + fn
        f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1e-12), torch.zeros_like(tp))
        if average == "weighted":
            support = tp + fn
            return float((f1 * support).sum() / support.sum().clamp(min=1e-12))
        return float(f1.mean()) if f1.dim() else float(f1)

    @staticmethod
    def mean_squared_error(predictions: torch.Tensor, targets: torch.Tensor) -> float:
        """Mean of squared differences."""
        return float(((predictions.detach() - targets.detach()) ** 2).mean())

    @staticmethod
    def mean_absolute_error(predictions: torch.Tensor, targets: torch.Tensor) -> float:
        """Mean of absolute differences."""
        return float((predictions.detach() - targets.detach()).abs().mean())


def compute_metrics(predictions: torch.Tensor, targets: torch.Tensor,
                    metric_fns: Mapping[str, Callable[[torch.Tensor, torch.Tensor], Any]] | None = None) -> dict[str, float]:
    """Several metrics at once; by default accuracy and top-5 accuracy for class scores, MSE and
    MAE for one value per example. A metric that fails raises, naming itself (it is not recorded as 0)."""
    if metric_fns is None:
        if predictions.dim() > 1 and predictions.size(-1) > 1:
            metric_fns = {"accuracy": StandardMetrics.accuracy,
                          "top5_acc": lambda p, t: StandardMetrics.top_k_accuracy(p, t, k=5)}
        else:
            metric_fns = {"mse": StandardMetrics.mean_squared_error, "mae": StandardMetrics.mean_absolute_error}
    results = {}
    for name, fn in metric_fns.items():
        try:
            results[name] = float(fn(predictions, targets))
        except Exception as err:
            raise ValueError(f"compute_metrics: metric {name!r} failed on predictions {tuple(predictions.shape)} "
                             f"and targets {tuple(targets.shape)}: {err}") from err
    return results
