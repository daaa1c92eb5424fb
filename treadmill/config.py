"""Training configuration: dataclasses validated at construction, with pytorch-treadmill aliases.

`TrainingConfig`, `OptimizerConfig` and `SchedulerConfig` accept every field of the Treadmill
documentation (seed 001) and, as aliases, the field names of pytorch-treadmill 0.6.5, so code
written for either runs unchanged. A wrong value fails here, naming the field and what is allowed,
instead of deep inside a training run.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from treadmill.training.config_values import optimizer_fields, plain_value
from treadmill.training.experiment_dir import create_experiment_dir, is_experiment_dir
from treadmill.utils import resolve_device
from treadmill.validation import (
    ConfigError,
    check_range,
    check_type,
    closest_hint,
    unknown_key_error,
)

__all__ = [
    "ConfigError",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainingConfig",
    "BUILTIN_SCHEDULERS",
    "STEP_SCHEDULERS",
]


T = TypeVar("T")


def _with_aliases(aliases: Mapping[str, str]) -> Callable[[type[T]], type[T]]:
    """Let a dataclass accept alias keyword names and reject unknown ones with a suggestion."""

    def wrap(cls: type[T]) -> type[T]:
        dataclass_init = cls.__init__  # type: ignore[misc]
        field_names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            for alias, target in aliases.items():
                if alias in kwargs:
                    value = kwargs.pop(alias)
                    if target in kwargs and kwargs[target] != value:
                        raise ConfigError(
                            f"{cls.__name__}: both {target!r} and its alias {alias!r} were given "
                            f"({kwargs[target]!r} vs {value!r}); pass only one."
                        )
                    kwargs[target] = value
            for key in kwargs:
                if key not in field_names:
                    raise unknown_key_error(cls.__name__, key, sorted(field_names + list(aliases)))
            dataclass_init(self, *args, **kwargs)

        __init__.__doc__ = dataclass_init.__doc__
        cls.__init__ = __init__  # type: ignore[method-assign,misc]
        for alias, target in aliases.items():
            if alias not in field_names:
                setattr(cls, alias, property(lambda self, _t=target: getattr(self, _t)))  # type: ignore[misc]
        cls.ALIASES = dict(aliases)  # type: ignore[attr-defined]
        return cls

    return wrap


def _optimizer_names() -> list[str]:
    return sorted(
        name
        for name, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer
    )


@dataclass
class OptimizerConfig:
    """Which optimizer to build, with its learning rate, weight decay and extra arguments.

    `lr_scales` maps a module-name prefix to a multiplier of `lr` (seed 004's encoder_lr_scale:
    `{"encoder": 0.1}`); `no_decay_norm_and_bias` exempts norms, biases and embeddings'
    positional tables from weight decay.
    """

    optimizer_class: str | type = "Adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    lr_scales: dict[str, float] = field(default_factory=dict)
    no_decay_norm_and_bias: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.optimizer_class, str):
            names = _optimizer_names()
            name = self.optimizer_class.removeprefix("torch.optim.").rsplit(".", 1)[-1]  # as to_dict writes it
            if name not in names:
                raise ConfigError(
                    f"OptimizerConfig.optimizer_class={self.optimizer_class!r} is not a torch.optim "
                    f"optimizer.{closest_hint(self.optimizer_class, names)} Allowed: {', '.join(names)}, "
                    "or an optimizer class."
                )
            # pytorch-treadmill users read the resolved class back: config.optimizer_class is torch.optim.Adam
            self.optimizer_class = getattr(torch.optim, name)
        elif not (isinstance(self.optimizer_class, type) and issubclass(self.optimizer_class, torch.optim.Optimizer)):
            raise ConfigError(
                f"OptimizerConfig.optimizer_class must be a torch.optim name or an Optimizer subclass, "
                f"got {self.optimizer_class!r}."
            )
        check_range("OptimizerConfig.lr", self.lr, 0, low_inclusive=False)
        check_range("OptimizerConfig.weight_decay", self.weight_decay, 0)
        for prefix, scale in self.lr_scales.items():
            if not isinstance(scale, (int, float)) or scale < 0:
                raise ConfigError(f"OptimizerConfig.lr_scales[{prefix!r}] must be a number >= 0, got {scale!r}.")

    def resolve_class(self) -> type[torch.optim.Optimizer]:
        """The optimizer class this config names."""
        return self.optimizer_class  # type: ignore[return-value]  # resolved in __post_init__


# Built-in schedules (defined in treadmill.schedulers) and the torch schedulers that are meant to be
# stepped once per optimizer step rather than once per epoch.
BUILTIN_SCHEDULERS = ("warmup_cosine", "warmup_linear", "warmup_constant", "inverse_sqrt")
STEP_SCHEDULERS = (*BUILTIN_SCHEDULERS, "OneCycleLR", "CyclicLR", "LambdaLR")


def _scheduler_names() -> list[str]:
    base = torch.optim.lr_scheduler.LRScheduler
    torch_names = [
        name
        for name, obj in vars(torch.optim.lr_scheduler).items()
        if isinstance(obj, type) and (issubclass(obj, base) or name == "ReduceLROnPlateau") and obj is not base
    ]
    return sorted(set(BUILTIN_SCHEDULERS) | set(torch_names))


@dataclass
class SchedulerConfig:
    """A learning-rate schedule: a built-in name, a torch.optim.lr_scheduler name, or a class.

    `interval` is "step" (once per optimizer step) or "epoch"; by default built-in warm-up
    schedules, OneCycleLR and CyclicLR step per optimizer step and other torch schedulers per
    epoch. `monitor` is the metric ReduceLROnPlateau watches.
    """

    scheduler_class: str | type | None = None
    params: dict[str, Any] = field(default_factory=dict)
    interval: str | None = None
    monitor: str = "val_loss"

    def __post_init__(self) -> None:
        if isinstance(self.scheduler_class, str):
            names = _scheduler_names()
            self.scheduler_class = self.scheduler_class.removeprefix("torch.optim.lr_scheduler.")
            if self.scheduler_class not in names:
                raise ConfigError(
                    f"SchedulerConfig.scheduler_class={self.scheduler_class!r} is unknown."
                    f"{closest_hint(self.scheduler_class, names)} Allowed: {', '.join(names)}, or a class."
                )
            if self.scheduler_class not in BUILTIN_SCHEDULERS:  # a torch scheduler: its class, as pytorch-treadmill gives it
                self.scheduler_class = getattr(torch.optim.lr_scheduler, self.scheduler_class)
        elif self.scheduler_class is not None and not isinstance(self.scheduler_class, type):
            raise ConfigError(
                f"SchedulerConfig.scheduler_class must be a name or a class, got {self.scheduler_class!r}."
            )
        if self.interval is None:
            name = self.name
            self.interval = "step" if name in STEP_SCHEDULERS else "epoch"
        if self.interval not in ("step", "epoch"):
            raise ConfigError(f"SchedulerConfig.interval must be 'step' or 'epoch', got {self.interval!r}.")
        if self.scheduler_class in BUILTIN_SCHEDULERS:
            warmup = self.params.get("warmup_steps", 0)
            if not isinstance(warmup, int) or warmup < 0:
                raise ConfigError(f"SchedulerConfig.params['warmup_steps'] must be an int >= 0, got {warmup!r}.")

    @property
    def name(self) -> str:
        """The scheduler's name (class name for classes)."""
        if isinstance(self.scheduler_class, type):
            return self.scheduler_class.__name__
        return str(self.scheduler_class)


MIXED_PRECISION_CHOICES = (False, True, "no", "bf16", "fp16")
DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")
STRATEGIES = ("ddp", "fsdp")


@_with_aliases(
    {
        "validate_every": "validation_frequency",
        "print_every": "log_frequency",
        "grad_clip_norm": "max_grad_norm",
        "accumulate_grad_batches": "gradient_accumulation_steps",
    }
)
@dataclass
class TrainingConfig:
    """Everything about how to train: epochs, device, precision, accumulation, clipping, validation,
    logging, early stopping, checkpoints, optimizer and schedule.

    pytorch-treadmill 0.6.5 names are accepted as aliases: `validate_every`, `print_every`,
    `grad_clip_norm`, `accumulate_grad_batches` (and `progress_bar`, `scheduler`, which share our
    names).
    """

    epochs: int = 10
    device: str = "auto"
    mixed_precision: bool | str = False
    force_mixed_precision: bool = False
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = None
    validation_frequency: int = 1
    # Validate after every N optimizer steps instead of every validation_frequency epochs.
    validation_every_n_steps: int | None = None
    log_frequency: int = 10
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    monitor: str = "val_loss"
    monitor_mode: str = "auto"
    checkpoint_dir: str | None = None
    save_best_model: bool = True
    save_last_model: bool = True
    checkpoint_every_n_steps: int | None = None
    keep_last_checkpoints: int = 1
    save_top_k: int = 1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig | None = None
    seed: int | None = None
    progress_bar: bool = True
    max_steps: int | None = None
    overfit_batches: int = 0
    # module-name patterns (fnmatch, "pair_encoder*") whose parameters do not train until
    # `unfreeze_at_step` optimizer steps (never, when None); callbacks.FreezeModules does it
    freeze: list[str] = field(default_factory=list)
    unfreeze_at_step: int | None = None
    check_embedding_inputs: bool = True
    detect_non_finite: bool = True
    strategy: str = "ddp"
    fsdp_wrap: list[str] | None = None
    activation_checkpointing: bool = False
    # pytorch-treadmill 0.6.5's own fields (docs/compat.md)
    project_name: str | None = None
    timezone: str = "UTC"
    resume_training: bool = False
    additional_epochs: int | None = None
    keep_all_checkpoints: bool = False
    custom_forward_fn: Callable[..., Any] | None = None
    custom_backward_fn: Callable[..., Any] | None = None
    overfit_threshold: float | None = None

    def __post_init__(self) -> None:
        self._check_types()
        self._check_compat_fields()
        self._check_positive_int("epochs", minimum=1)
        self._check_positive_int("gradient_accumulation_steps", minimum=1)
        self._check_positive_int("validation_frequency", minimum=1)
        self._check_positive_int("log_frequency", minimum=1)
        self._check_positive_int("keep_last_checkpoints", minimum=1)
        self._check_positive_int("save_top_k", minimum=1)
        self._check_positive_int("overfit_batches", minimum=0)
        if not isinstance(self.freeze, (list, tuple)) or not all(isinstance(p, str) and p for p in self.freeze):
            raise ConfigError(f"TrainingConfig.freeze must be a list of module-name patterns, got {self.freeze!r}.",
                              field="freeze")
        self.freeze = list(self.freeze)
        if self.unfreeze_at_step is not None and not self.freeze:
            raise ConfigError("TrainingConfig.unfreeze_at_step is set but freeze lists no modules.", field="unfreeze_at_step")
        for name in ("early_stopping_patience", "checkpoint_every_n_steps", "max_steps", "validation_every_n_steps",
                     "unfreeze_at_step"):
            if getattr(self, name) is not None:
                self._check_positive_int(name, minimum=1)
        if self.max_grad_norm is not None:
            check_range("TrainingConfig.max_grad_norm", self.max_grad_norm, 0, low_inclusive=False)
        check_range("TrainingConfig.early_stopping_min_delta", self.early_stopping_min_delta, 0)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"TrainingConfig.seed must be an integer or None, got {self.seed!r}.")
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ConfigError(
                f"TrainingConfig.mixed_precision={self.mixed_precision!r} is not allowed. "
                f"Allowed: {', '.join(map(repr, MIXED_PRECISION_CHOICES))} (True means bf16)."
            )
        kind = str(self.device).split(":")[0]
        if kind not in DEVICE_KINDS:
            raise ConfigError(
                f"TrainingConfig.device={self.device!r} is unknown. Allowed: 'auto', 'cpu', 'cuda', "
                "'cuda:N', 'mps'."
            )
        # "auto" reads back as the device it chose (as in pytorch-treadmill); to_dict keeps "auto",
        # so a saved config means the same on a machine with other devices.
        self._requested_device = self.device
        if self.device == "auto":
            self.device = resolve_device("auto").type
        if (self.project_name is not None and self.checkpoint_dir is not None and not self.resume_training
                and not is_experiment_dir(self.checkpoint_dir)):  # dataclasses.replace must not nest another
            self.checkpoint_dir = create_experiment_dir(self.checkpoint_dir, self.project_name, self.timezone)
        self._check_strategy()
        if self.monitor_mode not in ("auto", "min", "max"):
            raise ConfigError(f"TrainingConfig.monitor_mode must be 'auto', 'min' or 'max', got {self.monitor_mode!r}.")
        if isinstance(self.optimizer, Mapping):
            self.optimizer = OptimizerConfig(**optimizer_fields(self.optimizer))
        if not isinstance(self.optimizer, OptimizerConfig):
            raise ConfigError(f"TrainingConfig.optimizer must be an OptimizerConfig, got {type(self.optimizer).__name__}.")
        if isinstance(self.scheduler, Mapping):
            self.scheduler = SchedulerConfig(**self.scheduler)
        if self.scheduler is not None and not isinstance(self.scheduler, SchedulerConfig):
            raise ConfigError(f"TrainingConfig.scheduler must be a SchedulerConfig or None, got {type(self.scheduler).__name__}.")

    def _check_types(self) -> None:
        """Flags must be real booleans ("no" is truthy), names strings, checkpoint_dir a path."""
        for name in ("force_mixed_precision", "save_best_model", "save_last_model", "progress_bar",
                     "check_embedding_inputs", "detect_non_finite"):
            check_type(f"TrainingConfig.{name}", getattr(self, name), bool, "true or false")
        for name in ("device", "monitor", "monitor_mode"):
            check_type(f"TrainingConfig.{name}", getattr(self, name), str, "a string")
        if not self.monitor:
            raise ConfigError("TrainingConfig.monitor must name a metric (e.g. 'val_loss'), got ''.", field="monitor")
        check_type("TrainingConfig.checkpoint_dir", self.checkpoint_dir, (str, os.PathLike), "a directory path", optional=True)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = os.fspath(self.checkpoint_dir)
            if not self.checkpoint_dir:
                raise ConfigError("TrainingConfig.checkpoint_dir must be a directory path or None, got ''.",
                                  field="checkpoint_dir")

    def _check_strategy(self) -> None:
        """strategy, fsdp_wrap and activation_checkpointing (docs/distributed.md)."""
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"TrainingConfig.strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {self.strategy!r}: "
                              "'ddp' replicates the model on every process, 'fsdp' shards it.", field="strategy")
        check_type("TrainingConfig.activation_checkpointing", self.activation_checkpointing, bool, "true or false")
        if self.fsdp_wrap is not None:
            if isinstance(self.fsdp_wrap, str) or not all(isinstance(n, str) and n for n in self.fsdp_wrap):
                raise ConfigError("TrainingConfig.fsdp_wrap must be a list of module class names (e.g. ['DecoderBlock']) "
                                  f"or None, got {self.fsdp_wrap!r}.", field="fsdp_wrap")
            self.fsdp_wrap = list(self.fsdp_wrap)
            if self.strategy != "fsdp":
                warnings.warn("TrainingConfig.fsdp_wrap is used only with strategy='fsdp'; it is ignored.",
                              UserWarning, stacklevel=4)
        if self.strategy == "fsdp" and self.precision == "fp16":
            raise ConfigError("TrainingConfig.strategy='fsdp' with mixed_precision='fp16' is not supported: the fp16 "
                              "grad scaler would decide on each rank's shard alone. Use mixed_precision='bf16'.",
                              field="mixed_precision")

    def _check_compat_fields(self) -> None:
        """pytorch-treadmill's fields: types, and resume_training's need of a directory."""
        check_type("TrainingConfig.project_name", self.project_name, str, "a string", optional=True)
        check_type("TrainingConfig.timezone", self.timezone, str, "a time-zone name (UTC, IST, Europe/Paris)")
        for name in ("resume_training", "keep_all_checkpoints"):
            check_type(f"TrainingConfig.{name}", getattr(self, name), bool, "true or false")
        check_range("TrainingConfig.additional_epochs", self.additional_epochs, 1, integer=True, optional=True)
        check_range("TrainingConfig.overfit_threshold", self.overfit_threshold, 0, optional=True)
        for name in ("custom_forward_fn", "custom_backward_fn"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ConfigError(f"TrainingConfig.{name} must be a function or None, got {getattr(self, name)!r}.", field=name)
        if self.resume_training and self.checkpoint_dir is None:
            raise ConfigError(
                "TrainingConfig.resume_training=True needs checkpoint_dir: the directory of the run to resume.",
                field="checkpoint_dir",
            )
        if self.additional_epochs is not None and not self.resume_training:
            warnings.warn("TrainingConfig.additional_epochs counts from a resumed run; without resume_training=True "
                          "it is ignored.", UserWarning, stacklevel=4)

    def _check_positive_int(self, name: str, minimum: int) -> None:
        check_range(f"TrainingConfig.{name}", getattr(self, name), minimum, integer=True)

    @property
    def precision(self) -> str:
        """The normalised precision: "fp32", "bf16" or "fp16"."""
        if self.mixed_precision in (False, "no"):
            return "fp32"
        if self.mixed_precision in (True, "bf16"):
            return "bf16"
        return "fp16"

    def to_dict(self) -> dict[str, Any]:
        """A plain-data view (classes and functions by name) for logs, checkpoints and config comparison."""
        data: dict[str, Any] = plain_value(self)
        data["device"] = getattr(self, "_requested_device", self.device)
        return data
