"""Build optimizers (with per-module learning rates and weight-decay groups) and LR schedules,
sized to the run's number of optimizer steps."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from treadmill.config import ConfigError, OptimizerConfig, SchedulerConfig, TrainingConfig

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "scheduler_for",
    "total_optimizer_steps",
    "warmup_schedule",
    "param_groups",
]

# Parameters of these modules are not weight-decayed when `no_decay_norm_and_bias` is set.
_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.Embedding)


def _lr_scale(name: str, lr_scales: dict[str, float]) -> float:
    # The longest matching prefix wins, so {"encoder": 0.1, "encoder.embed": 1.0} works as expected.
    best, scale = -1, 1.0
    for prefix, value in lr_scales.items():
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
            best, scale = len(prefix), float(value)
    return scale


def param_groups(model: nn.Module, config: OptimizerConfig) -> list[dict[str, Any]]:
    """Group trainable parameters by (lr scale, weight decay) as the config asks."""
    no_decay: set[str] = set()
    if config.no_decay_norm_and_bias:
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                full = f"{module_name}.{param_name}" if module_name else param_name
                is_norm = isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
                if is_norm or param.ndim < 2:
                    no_decay.add(full)
    for prefix in config.lr_scales:
        if not any(n == prefix or n.startswith(prefix + ".") for n, _ in model.named_parameters()):
            raise ConfigError(
                f"OptimizerConfig.lr_scales has prefix {prefix!r}, which matches no parameter of the model. "
                f"Top-level modules: {', '.join(n for n, _ in model.named_children())}."
            )
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = 0.0 if name in no_decay else config.weight_decay
        key = (_lr_scale(name, config.lr_scales), decay)
        groups.setdefault(key, []).append(param)
    return [
        {"params": params, "lr": config.lr * scale, "weight_decay": decay, "lr_scale": scale}
        for (scale, decay), params in groups.items()
    ]


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer the config names, over the model's trainable parameters."""
    cls = config.resolve_class()
    kwargs = dict(config.params)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    try:
        return cls(param_groups(model, config), lr=config.lr, **kwargs)  # type: ignore[call-arg]
    except TypeError as err:
        raise ConfigError(f"OptimizerConfig.params {kwargs} do not fit {cls.__name__}: {err}") from err


def warmup_schedule(
    kind: str, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> Any:
    """The LR multiplier as a function of the optimizer step for a built-in schedule."""
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "warmup_constant":
            return 1.0
        if kind == "inverse_sqrt":
            return math.sqrt(max(1, warmup_steps)) / math.sqrt(step + 1)
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        if kind == "warmup_cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:  # warmup_linear
            shape = 1.0 - progress
        return min_lr_ratio + (1.0 - min_lr_ratio) * shape

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: SchedulerConfig, total_steps: int, total_epochs: int
) -> Any:
    """The scheduler the config names; `total_steps`/`total_epochs` fill in schedule lengths."""
    params = dict(config.params)
    name = config.name
    if name in ("warmup_cosine", "warmup_linear", "warmup_constant", "inverse_sqrt"):
        factor = warmup_schedule(
            name,
            warmup_steps=int(params.pop("warmup_steps", 0)),
            total_steps=int(params.pop("total_steps", total_steps)),
            min_lr_ratio=float(params.pop("min_lr_ratio", 0.0)),
        )
        if params:
            raise ConfigError(
                f"SchedulerConfig.params has unknown keys {sorted(params)} for {name!r}; "
                "allowed: warmup_steps, total_steps, min_lr_ratio."
            )
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    cls = config.scheduler_class if isinstance(config.scheduler_class, type) else getattr(torch.optim.lr_scheduler, name)
    # Fill the length arguments users otherwise compute by hand.
    if name == "CosineAnnealingLR" and "T_max" not in params:
        params["T_max"] = total_steps if config.interval == "step" else total_epochs
    if name == "OneCycleLR" and "total_steps" not in params and "epochs" not in params:
        params["total_steps"] = total_steps
        params.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
    try:
        return cls(optimizer, **params)
    except TypeError as err:
        raise ConfigError(f"SchedulerConfig.params {params} do not fit {name}: {err}") from err


def _batches_per_epoch(loader: Any, epochs: int) -> list[int]:
    """Training batches in each epoch; 0 where the loader has no length."""
    # A token-budget sampler cuts a different number of batches each epoch; counting only
    # epoch 0's would end a OneCycleLR before the last steps (it raises) or restart a cosine.
    counter = getattr(getattr(loader, "batch_sampler", None), "epoch_lengths", None)
    if callable(counter):
        return [int(n) for n in counter(epochs)]
    try:
        return [len(loader)] * epochs
    except TypeError:
        return [0] * epochs


def total_optimizer_steps(loader: Any, config: TrainingConfig) -> int:
    """The optimizer steps a run of `config` over `loader` takes (at least 1), for schedule lengths."""
    total = 0
    for batches in _batches_per_epoch(loader, config.epochs):
        if config.overfit_batches:
            batches = min(batches, config.overfit_batches) if batches else config.overfit_batches
        total += math.ceil(batches / config.gradient_accumulation_steps)
    if config.max_steps:
        total = min(total, config.max_steps) if total else config.max_steps
    if total == 0 and config.scheduler is not None:
        # stacklevel: total_optimizer_steps <- scheduler_for <- Trainer.__init__ <- the caller
        warnings.warn("Cannot tell the number of training steps (the loader has no len); "
                      "give SchedulerConfig.params['total_steps'].", stacklevel=4)
    return max(total, 1)


def scheduler_for(optimizer: torch.optim.Optimizer, config: TrainingConfig, train_dataloader: Any) -> Any:
    """The scheduler `config.scheduler` asks for, sized to the run over `train_dataloader`; or None."""
    if config.scheduler is None or config.scheduler.scheduler_class is None:
        return None
    return build_scheduler(optimizer, config.scheduler, total_optimizer_steps(train_dataloader, config), config.epochs)
