"""Confusion matrices and what classification runs report from them: accuracy and macro-F1.

Rows are the true class, columns the predicted one (counts). Macro-F1 is the unweighted mean of
the per-class F1 = 2 TP / (2 TP + FP + FN); a class with no examples and no predictions has no F1
and is left out of the mean (it cannot be right or wrong), one never predicted but present scores 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "accuracy_of", "per_class_scores", "macro_f1", "confusion_report"]


def confusion_matrix(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(K, K) long counts: [true, predicted]."""
    if predicted.shape != target.shape:
        raise ValueError(f"confusion_matrix: predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ.")
    flat = target.reshape(-1).long() * num_classes + predicted.reshape(-1).long()
    return torch.bincount(flat.cpu(), minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy_of(confusion: Tensor) -> float:
    """Share of examples on the diagonal."""
    total = int(confusion.sum())
    return float(confusion.diagonal().sum()) / total if total else float("nan")


def per_class_scores(confusion: Tensor) -> list[dict[str, float]]:
    """Per class: precision, recall, f1 (NaN where undefined) and support."""
    counts = confusion.double()
    tp = counts.diagonal()
    predicted, support = counts.sum(dim=0), counts.sum(dim=1)
    rows = []
    for k in range(counts.shape[0]):
        precision = float(tp[k] / predicted[k]) if predicted[k] else float("nan")
        recall = float(tp[k] / support[k]) if support[k] else float("nan")
        denominator = float(predicted[k] + support[k])  # 2 TP + FP + FN
        rows.append({"precision": precision, "recall": recall,
                     "f1": 2 * float(tp[k]) / denominator if denominator else float("nan"), "support": int(support[k])})
    return rows


def macro_f1(confusion: Tensor) -> float:
    """Unweighted mean of the per-class F1 over classes that occur (as truth or prediction)."""
    scores = [row["f1"] for row in per_class_scores(confusion) if row["f1"] == row["f1"]]
    return sum(scores) / len(scores) if scores else float("nan")


def confusion_report(confusion: Tensor, labels: list[str]) -> dict[str, Any]:
    """The JSON form a run writes: labels, the matrix, accuracy, macro-F1 and per-class scores."""
    if len(labels) != confusion.shape[0]:
        raise ValueError(f"confusion_report: {len(labels)} labels for a {confusion.shape[0]}-class matrix.")
    return {"labels": labels, "matrix": confusion.tolist(), "accuracy": accuracy_of(confusion),
            "macro_f1": macro_f1(confusion),
            "per_class": dict(zip(labels, per_class_scores(confusion), strict=True))}
