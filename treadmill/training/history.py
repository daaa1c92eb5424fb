"""The training history `fit()` returns, in the shape pytorch-treadmill code reads::

    {"train_metrics": {"loss": [per epoch], "accuracy": [...]},
     "val_metrics":   {"loss": [per validated epoch], ...},      # val_ prefix removed
     "best_metrics":  {"loss": best val_loss, "accuracy": ...},   # lowest loss/errors, highest others
     "total_epochs":  epochs trained,
     "val_epochs":    [1-based epochs at which validation ran],
     "loss": [...], "val_loss": [...], ...}                        # every metric by its full name too

Older Treadmill checkpoints stored `train_metrics` / `val_metrics` as one dict per epoch;
`upgrade_history` reads them into this shape.
"""

from __future__ import annotations

from typing import Any

from treadmill.training.metric_mode import infer_mode

__all__ = ["new_history", "record_epoch", "upgrade_history", "last_metrics"]


def new_history() -> dict[str, Any]:
    """An empty history."""
    return {"train_metrics": {}, "val_metrics": {}, "best_metrics": {}, "total_epochs": 0, "val_epochs": []}


def record_epoch(history: dict[str, Any], metrics: dict[str, float]) -> None:
    """Add one epoch's metrics (train names bare, validation names with val_)."""
    for key, value in metrics.items():
        history.setdefault(key, []).append(value)
        if key.startswith("val_"):
            name = key[len("val_"):]
            history["val_metrics"].setdefault(name, []).append(value)
            best = history["best_metrics"].get(name)
            if best is None or (value < best if infer_mode(key) == "min" else value > best):
                history["best_metrics"][name] = value
        else:
            history["train_metrics"].setdefault(key, []).append(value)
    history["total_epochs"] += 1
    if any(key.startswith("val_") for key in metrics):
        history["val_epochs"].append(history["total_epochs"])


def upgrade_history(saved: dict[str, Any]) -> dict[str, Any]:
    """A history from any Treadmill checkpoint, in the current shape."""
    if not isinstance(saved.get("train_metrics"), list):
        return saved
    history = new_history()
    for train, val in zip(saved["train_metrics"], saved["val_metrics"], strict=False):
        record_epoch(history, {**train, **val})
    for key, value in saved.items():  # extra entries a phase added (before_finetune, ...)
        history.setdefault(key, value)
    return history


def last_metrics(history: dict[str, Any], split: str) -> dict[str, float]:
    """The latest epoch's values of a split ("train" or "val"), by full metric name."""
    prefix = "" if split == "train" else "val_"
    return {f"{prefix}{name}": values[-1] for name, values in history[f"{split}_metrics"].items() if values}
