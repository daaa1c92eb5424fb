"""The overfit test (seed 004's first experiment): can the model memorise N fixed batches?

With `TrainingConfig(overfit_batches=N)` every epoch trains on the same first N batches.
`OverfitReport` says at the end, in one line, whether the model memorised them: the final
epoch's train loss is at most `loss_ratio` x the first epoch's, and every train accuracy metric
logged (a name containing "acc") is at least `accuracy_threshold`. A model that fails this cannot
learn its task at all: fix it before scaling up.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from treadmill.callbacks.base import Callback

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["OverfitReport"]

_HINT = (
    "check that the output depends on the input, that targets line up with predictions (shifted by one "
    "for teacher forcing?), that parameters are not frozen, and try a higher learning rate or more epochs"
)


class OverfitReport(Callback):
    """Report whether a run with `overfit_batches=N` memorised its batches (`memorised`, `message`)."""

    def __init__(self, loss_ratio: float = 0.05, accuracy_threshold: float = 0.99) -> None:
        if not 0 < loss_ratio < 1:
            raise ValueError(
                f"OverfitReport(loss_ratio={loss_ratio!r}) must be in (0, 1): the final loss as a fraction of epoch 1's."
            )
        if not 0 < accuracy_threshold <= 1:
            raise ValueError(
                f"OverfitReport(accuracy_threshold={accuracy_threshold!r}) must be in (0, 1]."
            )
        self.loss_ratio = loss_ratio
        self.accuracy_threshold = accuracy_threshold
        self.memorised: bool | None = None  # None until a run with overfit_batches ends
        self.message = ""
        self._first: dict[str, float] | None = None
        self._last: dict[str, float] = {}

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        train = {
            k: float(v)
            for k, v in metrics.items()
            if not k.startswith("val_") and isinstance(v, (int, float))
        }
        if self._first is None:
            self._first = train
        self._last = train

    def on_train_end(self, trainer: Trainer) -> None:
        batches = trainer.config.overfit_batches
        if not batches or self._first is None or "loss" not in self._last:
            return
        first, final = self._first["loss"], self._last["loss"]
        loss_ok = math.isfinite(final) and final <= self.loss_ratio * first
        accuracies = {k: v for k, v in self._last.items() if "acc" in k}
        low = {k: v for k, v in accuracies.items() if not v >= self.accuracy_threshold}
        self.memorised = loss_ok and not low
        share = f"{final / first:.1%}" if first > 0 and math.isfinite(final) else "n/a"
        evidence = f"train loss {first:.4g} (epoch 1) -> {final:.4g} (epoch {trainer.history['total_epochs']}), {share} of epoch 1 (needs <= {self.loss_ratio:.0%})"
        if accuracies:
            evidence += (
                "; "
                + ", ".join(f"{k} {v:.3f}" for k, v in accuracies.items())
                + f" (needs >= {self.accuracy_threshold:g})"
            )
        verdict = "MEMORISED" if self.memorised else "NOT memorised"
        self.message = f"Overfit test on {batches} batch(es): {verdict}: {evidence}."
        if not self.memorised:
            reasons = []
            if not loss_ok:
                reasons.append(
                    "the loss did not fall far enough (with label smoothing it cannot reach 0: raise loss_ratio)"
                )
            if low:
                reasons.append(f"{', '.join(low)} stayed below {self.accuracy_threshold:g}")
            self.message += f" {'; '.join(reasons).capitalize()}: {_HINT}."
        trainer.print(self.message)

    def state_dict(self) -> dict[str, Any]:
        return {"first": self._first}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._first = state.get("first")
