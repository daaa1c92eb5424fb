"""The sections of a run config, one dataclass each; `treadmill.cli.config` assembles them.

Each checks its own values on construction and names the offending key (`data.batch_size`).
The `training` and `seq2seq` sections are the library's TrainingConfig and Seq2SeqConfig.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from treadmill.validation import ConfigError, check_keys, check_range, closest_hint

__all__ = ["RunConfigError", "TaskSection", "ModelSection", "DataSection", "EvaluationSection",
           "DiagnosticsSection", "SequenceLevelSection", "section", "field_names"]

SPLITS = ("train", "valid", "test")


class RunConfigError(ConfigError):
    """A run config that cannot be used; the message names the key and what to do."""


def field_names(cls: type) -> list[str]:
    """The field names of a dataclass."""
    return [f.name for f in dataclasses.fields(cls)]


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise RunConfigError(f"{name} must be true or false, got {value!r}.")


def section(cls: type, where: str, values: Mapping[str, Any]) -> Any:
    """`cls(**values)` after checking the keys; value errors become RunConfigErrors naming `where`."""
    check_keys(where, values, field_names(cls))
    try:
        return cls(**values)
    except RunConfigError:
        raise
    except (ConfigError, TypeError, ValueError) as err:
        raise RunConfigError(f"{where}: {err}") from err


@dataclass
class TaskSection:
    """Which built-in task, with its options (`treadmill tasks` lists both)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from treadmill.data.tasks import task_options

        if not isinstance(self.options, Mapping):
            raise RunConfigError(f"task.options must be a mapping of the task's options, got {self.options!r}.")
        try:
            allowed = task_options(self.name)
        except ConfigError as err:
            raise RunConfigError(f"task: {err}") from err
        check_keys(f"task.options of {self.name!r}", self.options, allowed)


# Placeholders for the sizes a model takes from its task, so the model config can be checked
# before the task is built; the real ones replace them in `ModelSection.build_config`.
_PLACEHOLDER_SIZE = 8


@dataclass
class ModelSection:
    """The model family (`name`) and the fields of its config dataclass given in the YAML."""

    name: str = "transformer"
    fields: dict[str, Any] = field(default_factory=dict)
    # LoRA adapters over any family (treadmill.peft): {r, alpha, dropout, target_modules}, or None
    lora: dict[str, Any] | None = None
    # A finished run whose weights this run starts from (treadmill.cli.init_from), or None
    init_from: str | None = None
    # A classification head over the model (treadmill.models.classifier): {type, pooling, dropout}, or None
    head: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from treadmill.models.registry import MODELS, canonical_config

        if "init_from" in self.fields:
            self.fields = dict(self.fields)
            self.init_from = self.fields.pop("init_from")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise RunConfigError(f"model.init_from={self.init_from!r} must be the path of a finished run directory.")

        if "head" in self.fields:
            self.fields = dict(self.fields)
            self.head = self.fields.pop("head")
        if self.head is not None:
            from treadmill.models.classifier import HeadSettings

            try:
                self.head = HeadSettings.from_dict(self.head).as_dict()
            except ConfigError as err:
                raise RunConfigError(str(err)) from err

        if "lora" in self.fields:
            self.fields = dict(self.fields)
            self.lora = self.fields.pop("lora")
        if self.lora is not None:
            from treadmill.peft import LoraSettings

            try:
                self.lora = LoraSettings.from_dict(self.lora).as_dict()
            except ConfigError as err:
                raise RunConfigError(str(err)) from err

        if self.name not in MODELS:
            raise RunConfigError(
                f"model.name={self.name!r} is not a model.{closest_hint(self.name, MODELS)} Valid: {', '.join(sorted(MODELS))}."
            )
        from treadmill.models.registry import CONFIG_ALIASES

        for old, new in CONFIG_ALIASES.get(self.name, {}).items():
            if old in self.fields and new in self.fields and self.fields[old] != self.fields[new]:
                raise RunConfigError(
                    f"model.{old}={self.fields[old]!r} and model.{new}={self.fields[new]!r} name one field "
                    f"({old} is its old name): give only model.{new}."
                )
        self.fields = canonical_config(self.name, self.fields)  # old field names of runs trained before

    def config_class(self) -> type:
        """The model config dataclass of this family."""
        from treadmill.models.registry import MODELS

        return MODELS[self.name][0]

    def resolved_fields(self) -> dict[str, Any]:
        """Every field of the model config, defaults included; the task's sizes once known."""
        values = dataclasses.asdict(self.build_config())
        required = self.required_sizes()
        resolved = {k: v for k, v in values.items() if k in self.fields or k not in required}
        extra: dict[str, Any] = {"lora": self.lora} if self.lora is not None else {}
        if self.init_from is not None:
            extra["init_from"] = self.init_from
        if self.head is not None:
            extra["head"] = self.head
        return {**resolved, **extra}

    def required_sizes(self) -> list[str]:
        """The config fields without defaults: the sizes a task supplies (vocabularies, horizons)."""
        return [f.name for f in dataclasses.fields(self.config_class()) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]

    def build_config(self, sizes: Mapping[str, int] | None = None) -> Any:
        """The model config from the given fields and the task's `sizes` (placeholders when None)."""
        cls = self.config_class()
        check_keys("model", self.fields, ["name", *field_names(cls)])
        values = dict(self.fields)
        for name in self.required_sizes():
            if name not in values:
                values[name] = _PLACEHOLDER_SIZE if sizes is None else sizes[name]
        try:
            return cls(**values)
        except ConfigError as err:
            where = f"model.{err.field}" if err.field else "model"
            raise RunConfigError(f"{where}: {err}") from err
        except (TypeError, ValueError) as err:
            raise RunConfigError(f"model: {err}") from err


@dataclass
class DataSection:
    """Batching: a fixed batch size, or a token budget (`max_tokens`) that overrides it; optionally
    training examples drawn with replacement by weights of an example field (`sample_weights`:
    `{by: depth, weights: {1: 1, 2: 3}}`, values not listed weigh 1)."""

    batch_size: int = 64
    max_tokens: int | None = None
    eval_batch_size: int = 256
    num_workers: int = 0
    sample_weights: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_range("data.batch_size", self.batch_size, 1, integer=True)
        check_range("data.max_tokens", self.max_tokens, 1, integer=True, optional=True)
        check_range("data.eval_batch_size", self.eval_batch_size, 1, integer=True)
        check_range("data.num_workers", self.num_workers, 0, integer=True)
        if self.sample_weights is not None:
            self._check_sample_weights(self.sample_weights)

    def _check_sample_weights(self, given: Any) -> None:
        where = "data.sample_weights"
        if not isinstance(given, Mapping) or "by" not in given or not isinstance(given.get("weights"), Mapping):
            raise RunConfigError(f"{where} must be {{by: FIELD, weights: {{value: weight, ...}}}}, got {given!r}.")
        check_keys(where, given, ["by", "weights"])
        for value, weight in given["weights"].items():
            check_range(f"{where}.weights[{value!r}]", weight, 0)
        if not any(float(w) > 0 for w in given["weights"].values()):
            raise RunConfigError(f"{where}.weights: at least one weight must be > 0, got {dict(given['weights'])}.")
        if self.max_tokens is not None:
            raise RunConfigError(f"{where} draws fixed-size batches; it cannot be combined with data.max_tokens "
                                 f"(token budgets). Set data.max_tokens=null or remove {where}.")

    def weight_of(self) -> tuple[str, dict[str, float]] | None:
        """(field, {str(value): weight}) of `sample_weights`, None without it."""
        if self.sample_weights is None:
            return None
        return str(self.sample_weights["by"]), {str(k): float(v) for k, v in self.sample_weights["weights"].items()}


@dataclass
class EvaluationSection:
    """What is scored after training, and how it is decoded (merged over seq2seq.generation)."""

    splits: list[str] = field(default_factory=lambda: ["test"])
    generation: dict[str, Any] = field(default_factory=dict)
    samples: int = 5
    max_batches: int | None = None
    # average_last=N evaluates the mean weights of the last N epoch checkpoints instead of the best one
    average_last: int | None = None
    # example field(s) of the task whose values split every decoded metric: val_exact_match/n_demos=3
    group_by: str | list[str] | None = None

    def group_fields(self) -> list[str]:
        """`group_by` as a list (empty without it)."""
        if self.group_by is None:
            return []
        return [self.group_by] if isinstance(self.group_by, str) else list(self.group_by)

    def __post_init__(self) -> None:
        if not isinstance(self.splits, list) or any(split not in SPLITS for split in self.splits):
            raise RunConfigError(f"evaluation.splits must be a list drawn from {list(SPLITS)}, got {self.splits!r}.")
        if not isinstance(self.generation, Mapping):
            raise RunConfigError(f"evaluation.generation must be a mapping of decoding options, got {self.generation!r}.")
        check_range("evaluation.samples", self.samples, 0, integer=True)
        check_range("evaluation.max_batches", self.max_batches, 1, integer=True, optional=True)
        check_range("evaluation.average_last", self.average_last, 1, integer=True, optional=True)
        if self.group_by is not None and not (isinstance(self.group_by, str) or (
                isinstance(self.group_by, list) and all(isinstance(f, str) for f in self.group_by))):
            raise RunConfigError(f"evaluation.group_by must name an example field or list fields, got {self.group_by!r}.")


@dataclass
class DiagnosticsSection:
    """The representation diagnostics and the alarms that watch training."""

    enabled: bool = True
    every_n_steps: int = 200
    watch: list[str] = field(default_factory=list)
    on_alarm: Any = "warn"

    def __post_init__(self) -> None:
        from treadmill.callbacks.alarms import HealthMonitor

        _check_bool("diagnostics.enabled", self.enabled)
        check_range("diagnostics.every_n_steps", self.every_n_steps, 1, integer=True)
        try:
            HealthMonitor(on_alarm=self.on_alarm)
        except (ValueError, AttributeError) as err:  # AttributeError: neither a name nor a mapping
            raise RunConfigError(f"diagnostics.on_alarm: {err}") from err


@dataclass
class SequenceLevelSection:
    """The optional fine-tuning phase after teacher forcing: its budget, and the objective's options
    (SequenceLevelConfig's fields; method "mle" is more teacher forcing, the honest control)."""

    enabled: bool = False
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-4
    options: dict[str, Any] = field(default_factory=dict)

    PHASE_KEYS = ("enabled", "epochs", "max_steps", "lr")

    @property
    def method(self) -> str:
        """mrt, reinforce, grpo, consistency or mle."""
        return str(self.options.get("method", "mrt"))

    def __post_init__(self) -> None:
        from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig

        _check_bool("sequence_level.enabled", self.enabled)
        check_range("sequence_level.epochs", self.epochs, 1, integer=True)
        check_range("sequence_level.max_steps", self.max_steps, 1, integer=True, optional=True)
        check_range("sequence_level.lr", self.lr, 0, low_inclusive=False)
        check_keys("sequence_level", self.options, [*self.PHASE_KEYS, *field_names(SequenceLevelConfig)])
        if self.method != "mle":
            self.objective()

    def objective(self) -> Any:
        """The SequenceLevelConfig of the phase (not for method mle)."""
        from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig

        return section(SequenceLevelConfig, "sequence_level", self.options)

    def to_dict(self) -> dict[str, Any]:
        """The flat YAML form."""
        return {"enabled": self.enabled, "epochs": self.epochs, "max_steps": self.max_steps, "lr": self.lr, **self.options}
