"""The run config: one dataclass per section, read from YAML plus dotted overrides, checked whole.

    task:           {name: g2p-cmudict, options: {...}}     # see `treadmill tasks`
    model:          {name: transformer, d_model: 256, ...}  # the model config's fields
    data:           {batch_size: 64, max_tokens: null, eval_batch_size: 256, num_workers: 0}
    training:       {...TrainingConfig fields..., resume_from: null}
    seq2seq:        {...Seq2SeqConfig fields...}
    evaluation:     {splits: [test], generation: {...}, samples: 5, max_batches: null, average_last: null}
    diagnostics:    {enabled: true, every_n_steps: 200, watch: [], on_alarm: warn}
    sequence_level: {enabled: false, epochs: 1, max_steps: null, lr: 1e-4, method: mrt, ...}
    seed: 0

`load_run_config(path, overrides)` is the one way in, for `train`, `validate`, `sweep` and the
tests: every key is checked against its section's dataclass (an unknown one names the closest),
every value is checked, and the model config is built with placeholder vocabulary sizes, so a bad
value fails before any task is built or any file is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treadmill.config import OptimizerConfig, SchedulerConfig, TrainingConfig
from treadmill.seq2seq.trainer import Seq2SeqConfig
from treadmill.validation import ConfigError, check_keys, check_range, closest_hint

__all__ = [
    "RunConfig",
    "RunConfigError",
    "load_run_config",
    "parse_overrides",
    "merge_configs",
    "run_config_from_dict",
]

SPLITS = ("train", "valid", "test")


class RunConfigError(ConfigError):
    """A run config that cannot be used; the message names the key and what to do."""


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise RunConfigError(f"{name} must be true or false, got {value!r}.")


def _section(cls: type, where: str, values: Mapping[str, Any]) -> Any:
    """`cls(**values)` after checking the keys; value errors become RunConfigErrors naming `where`."""
    check_keys(where, values, _field_names(cls))
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

    def __post_init__(self) -> None:
        from treadmill.models.registry import MODELS, canonical_fields

        if self.name not in MODELS:
            raise RunConfigError(
                f"model.name={self.name!r} is not a model.{closest_hint(self.name, MODELS)} Valid: {', '.join(sorted(MODELS))}."
            )
        self.fields = canonical_fields(self.name, self.fields)  # old field names of runs trained before

    def config_class(self) -> type:
        """The model config dataclass of this family."""
        from treadmill.models.registry import MODELS

        return MODELS[self.name][0]

    def resolved_fields(self) -> dict[str, Any]:
        """Every field of the model config, defaults included; the task's sizes once known."""
        values = dataclasses.asdict(self.build_config())
        required = self.required_sizes()
        return {k: v for k, v in values.items() if k in self.fields or k not in required}

    def required_sizes(self) -> list[str]:
        """The config fields without defaults: the sizes a task supplies (vocabularies, horizons)."""
        return [f.name for f in dataclasses.fields(self.config_class()) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]

    def build_config(self, sizes: Mapping[str, int] | None = None) -> Any:
        """The model config from the given fields and the task's `sizes` (placeholders when None)."""
        cls = self.config_class()
        check_keys("model", self.fields, ["name", *_field_names(cls)])
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
    """Batching: a fixed batch size, or a token budget (`max_tokens`) that overrides it."""

    batch_size: int = 64
    max_tokens: int | None = None
    eval_batch_size: int = 256
    num_workers: int = 0

    def __post_init__(self) -> None:
        check_range("data.batch_size", self.batch_size, 1, integer=True)
        check_range("data.max_tokens", self.max_tokens, 1, integer=True, optional=True)
        check_range("data.eval_batch_size", self.eval_batch_size, 1, integer=True)
        check_range("data.num_workers", self.num_workers, 0, integer=True)


@dataclass
class EvaluationSection:
    """What is scored after training, and how it is decoded (merged over seq2seq.generation)."""

    splits: list[str] = field(default_factory=lambda: ["test"])
    generation: dict[str, Any] = field(default_factory=dict)
    samples: int = 5
    max_batches: int | None = None
    # average_last=N evaluates the mean weights of the last N epoch checkpoints instead of the best one
    average_last: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.splits, list) or any(split not in SPLITS for split in self.splits):
            raise RunConfigError(f"evaluation.splits must be a list drawn from {list(SPLITS)}, got {self.splits!r}.")
        if not isinstance(self.generation, Mapping):
            raise RunConfigError(f"evaluation.generation must be a mapping of decoding options, got {self.generation!r}.")
        check_range("evaluation.samples", self.samples, 0, integer=True)
        check_range("evaluation.max_batches", self.max_batches, 1, integer=True, optional=True)
        check_range("evaluation.average_last", self.average_last, 1, integer=True, optional=True)


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
        """mrt, reinforce or mle."""
        return str(self.options.get("method", "mrt"))

    def __post_init__(self) -> None:
        from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig

        _check_bool("sequence_level.enabled", self.enabled)
        check_range("sequence_level.epochs", self.epochs, 1, integer=True)
        check_range("sequence_level.max_steps", self.max_steps, 1, integer=True, optional=True)
        check_range("sequence_level.lr", self.lr, 0, low_inclusive=False)
        check_keys("sequence_level", self.options, [*self.PHASE_KEYS, *_field_names(SequenceLevelConfig)])
        if self.method != "mle":
            self.objective()

    def objective(self) -> Any:
        """The SequenceLevelConfig of the phase (not for method mle)."""
        from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig

        return _section(SequenceLevelConfig, "sequence_level", self.options)

    def to_dict(self) -> dict[str, Any]:
        """The flat YAML form."""
        return {"enabled": self.enabled, "epochs": self.epochs, "max_steps": self.max_steps, "lr": self.lr, **self.options}


@dataclass
class RunConfig:
    """Everything `treadmill train` needs, typed and checked."""

    task: TaskSection
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    seq2seq: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    diagnostics: DiagnosticsSection = field(default_factory=DiagnosticsSection)
    sequence_level: SequenceLevelSection = field(default_factory=SequenceLevelSection)
    seed: int = 0
    name: str | None = None
    resume_from: str | None = None  # training.resume_from in the YAML: how to start, not what to train

    def generation(self, at: str = "evaluation") -> dict[str, Any]:
        """Decoding options during training ("validation") or after it (evaluation's over validation's)."""
        during_training = dict(self.seq2seq.generation or {})
        return during_training if at == "validation" else {**during_training, **self.evaluation.generation}

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what config.yaml holds); `run_config_from_dict` reads it back."""
        training = self.training.to_dict()
        training["resume_from"] = self.resume_from
        return {
            "task": {"name": self.task.name, "options": dict(self.task.options)},
            "model": {"name": self.model.name, **self.model.resolved_fields()},
            "data": dataclasses.asdict(self.data),
            "training": training,
            "seq2seq": dataclasses.asdict(self.seq2seq),
            "evaluation": dataclasses.asdict(self.evaluation),
            "diagnostics": dataclasses.asdict(self.diagnostics),
            "sequence_level": self.sequence_level.to_dict(),
            "seed": self.seed,
            **({"name": self.name} if self.name is not None else {}),
        }


SECTIONS = ("task", "model", "data", "training", "seq2seq", "evaluation", "diagnostics", "sequence_level")
TOP_LEVEL = (*SECTIONS, "seed", "name")


def _training(section: Mapping[str, Any], seed: int) -> tuple[TrainingConfig, str | None]:
    """The TrainingConfig (seeded by the run's seed unless it has its own) and resume_from."""
    check_keys("training", section, [*_field_names(TrainingConfig), *TrainingConfig.ALIASES, "resume_from"])  # type: ignore[attr-defined]
    for key, cls in (("optimizer", OptimizerConfig), ("scheduler", SchedulerConfig)):
        if isinstance(section.get(key), Mapping):
            check_keys(f"training.{key}", section[key], _field_names(cls))
    values = {k: v for k, v in section.items() if k != "resume_from"}
    values.setdefault("seed", seed)
    try:
        return TrainingConfig(**values), section.get("resume_from")
    except (ConfigError, TypeError) as err:
        raise RunConfigError(f"training: {err}") from err


def _check_generation(config: RunConfig) -> None:
    """Decoding options as validation and evaluation will merge them, checked now, not at the first decode."""
    from treadmill.decoding.config import GenerationConfig, check_field_names

    if not isinstance(config.seq2seq.generation, Mapping):
        raise RunConfigError(f"seq2seq.generation must be a mapping of decoding options, got {config.seq2seq.generation!r}.")
    for where, at in (("seq2seq.generation", "validation"), ("evaluation.generation", "evaluation")):
        options = config.generation(at)
        try:
            check_field_names(options)
            GenerationConfig(**options)
        except (ValueError, TypeError) as err:
            raise RunConfigError(f"{where}: {err}") from err


def _check_average_last(config: RunConfig) -> None:
    count, training = config.evaluation.average_last, config.training
    if count is None:
        return
    if count > training.keep_last_checkpoints:
        raise RunConfigError(
            f"evaluation.average_last={count} averages the last {count} checkpoints, but "
            f"training.keep_last_checkpoints={training.keep_last_checkpoints} keeps only "
            f"{training.keep_last_checkpoints}. Set training.keep_last_checkpoints>={count}."
        )
    if not training.save_last_model:
        raise RunConfigError(
            "evaluation.average_last averages the epoch checkpoints that training.save_last_model writes; "
            "it is false here. Set training.save_last_model=true or evaluation.average_last=null."
        )


def run_config_from_dict(raw: Mapping[str, Any]) -> RunConfig:
    """The checked RunConfig of a mapping of sections (a parsed YAML file with its overrides)."""
    try:
        return _run_config(raw)
    except RunConfigError:
        raise
    except ConfigError as err:  # from the shared key and range checks: the message names the key
        raise RunConfigError(str(err), field=err.field) from err


def _run_config(raw: Mapping[str, Any]) -> RunConfig:
    check_keys("", raw, TOP_LEVEL)
    for name in SECTIONS:
        if raw.get(name) is not None and not isinstance(raw[name], Mapping):
            raise RunConfigError(f"Config section '{name}' must be a mapping of keys, got {raw[name]!r}.")
    task = raw.get("task")
    if not task or "name" not in task:
        raise RunConfigError("The config needs a task: `task: {name: reverse}` (see `treadmill tasks`).")
    seed = raw.get("seed", 0)
    check_range("seed", seed, 0, integer=True)
    model = dict(raw.get("model") or {})
    phase = dict(raw.get("sequence_level") or {})
    training, resume_from = _training(raw.get("training") or {}, seed)
    config = RunConfig(
        task=_section(TaskSection, "task", task),
        model=ModelSection(name=model.pop("name", "transformer"), fields=model),
        data=_section(DataSection, "data", raw.get("data") or {}),
        training=training,
        seq2seq=_section(Seq2SeqConfig, "seq2seq", raw.get("seq2seq") or {}),
        evaluation=_section(EvaluationSection, "evaluation", raw.get("evaluation") or {}),
        diagnostics=_section(DiagnosticsSection, "diagnostics", raw.get("diagnostics") or {}),
        sequence_level=SequenceLevelSection(
            **{k: phase.pop(k) for k in SequenceLevelSection.PHASE_KEYS if k in phase}, options=phase
        ),
        seed=seed,
        name=raw.get("name"),
        resume_from=resume_from,
    )
    config.model.build_config()  # value errors (n_heads that does not divide d_model) now, not after the task is built
    _check_generation(config)
    _check_average_last(config)
    return config


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Parse `a.b=value` strings (values in YAML syntax) into a nested dict."""
    from omegaconf import OmegaConf

    items = list(overrides)
    for item in items:
        if "=" not in item or item.startswith("="):
            raise RunConfigError(
                f"Bad override {item!r}: write dotted.key=value, e.g. model.d_model=256 or training.optimizer.lr=3e-4."
            )
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(items), resolve=True)  # type: ignore[return-value]
    except Exception as err:  # omegaconf raises several grammar errors
        raise RunConfigError(f"Cannot parse overrides {items}: {err}") from err


def merge_configs(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `update`, nested sections merged key by key (neither is modified)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_configs(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    """A YAML file of sections as a plain dict; errors name the file."""
    from omegaconf import OmegaConf

    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:
        raise RunConfigError(f"Cannot read {what} '{path}': {err}") from err
    if not isinstance(raw, dict):
        raise RunConfigError(f"{what.capitalize()} '{path}' must hold a mapping of sections (task, model, training, ...).")
    return raw


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """The checked run config of a YAML file and dotted overrides, with defaults filled in."""
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"Config file '{path}' does not exist. The examples are in examples/*.yaml.")
    return run_config_from_dict(merge_configs(read_yaml(path, "config file"), parse_overrides(overrides)))
