"""FreezeModules: keep some modules' parameters fixed until a step (seed 004's H6, decoupling).

    training: {freeze: ["pair_encoder*", "set_encoder"], unfreeze_at_step: 500}

Patterns match module names (`model.named_modules()`, fnmatch syntax); a matched module's
parameters get `requires_grad=False` when training starts, so they get no gradient and the
optimizer (built over every parameter) skips them; after optimizer step `unfreeze_at_step` they
train again. Both moments are printed. On resume past the step nothing is frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from torch import nn

from treadmill.callbacks.base import Callback
from treadmill.checkpoint import unwrap_model
from treadmill.validation import ConfigError

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["FreezeModules", "frozen_parameter_names"]


def frozen_parameter_names(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of the parameters under modules matching `patterns`; a pattern matching no module
    raises a ConfigError that lists the model's module names."""
    modules = [name for name, _ in model.named_modules() if name]
    frozen: set[str] = set()
    for pattern in patterns:
        matched = [name for name in modules if fnmatchcase(name, pattern)]
        if not matched:
            top = [name for name in modules if "." not in name]
            raise ConfigError(
                f"training.freeze pattern {pattern!r} matches no module of the model. Top-level modules: "
                f"{', '.join(top)} (nested names such as {modules[min(1, len(modules) - 1)]!r} and "
                "wildcards such as 'encoder*' work too).", field="freeze")
        for name in matched:
            frozen.update(f"{name}.{p}" for p, _ in model.get_submodule(name).named_parameters())
    return sorted(frozen)


class FreezeModules(Callback):
    """Freeze the parameters under `patterns` from the start until `unfreeze_at_step` (None: for good)."""

    def __init__(self, patterns: Sequence[str], unfreeze_at_step: int | None = None) -> None:
        self.patterns = list(patterns)
        self.unfreeze_at_step = unfreeze_at_step
        self.frozen = False

    def _set(self, trainer: Trainer, trainable: bool) -> int:
        model = unwrap_model(trainer.model)
        names = set(frozen_parameter_names(model, self.patterns))
        count = 0
        for name, param in model.named_parameters():
            if name in names:
                param.requires_grad_(trainable)
                count += param.numel()
        return count

    def on_train_start(self, trainer: Trainer) -> None:
        if self.unfreeze_at_step is not None and trainer.global_step >= self.unfreeze_at_step:
            return
        count = self._set(trainer, trainable=False)
        self.frozen = True
        until = f"until step {self.unfreeze_at_step}" if self.unfreeze_at_step is not None else "for the whole run"
        trainer.print(f"Froze {count:,} parameters of {', '.join(self.patterns)} {until} (step {trainer.global_step}).")

    def on_after_optimizer_step(self, trainer: Trainer) -> None:
        if self.frozen and self.unfreeze_at_step is not None and trainer.global_step >= self.unfreeze_at_step:
            count = self._set(trainer, trainable=True)
            self.frozen = False
            trainer.print(f"Unfroze {count:,} parameters of {', '.join(self.patterns)} at step {trainer.global_step}.")
