"""The run config: one dataclass per section, read from YAML plus dotted overrides, checked whole.

    task:           {name: g2p-cmudict, options: {...}}     # see `treadmill tasks`
    model:          {name: transformer, d_model: 256, ...}  # the model config's fields
    data:           {batch_size: 64, max_tokens: null, eval_batch_size: 256, num_workers: 0,
                     sample_weights: null}                  # or {by: FIELD, weights: {value: w}}
    training:       {...TrainingConfig fields..., resume_from: null}
    seq2seq:        {...Seq2SeqConfig fields...}
    evaluation:     {splits: [test], generation: {...}, samples: 5, max_batches: null, average_last: null,
                     group_by: null}                        # or FIELD / [FIELD, ...]: metrics per group
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

from treadmill.cli.cross_checks import check_example_fields, check_freeze_patterns
from treadmill.cli.sections import (
    DataSection,
    DiagnosticsSection,
    EvaluationSection,
    ModelSection,
    RunConfigError,
    SequenceLevelSection,
    TaskSection,
    field_names,
    section,
)
from treadmill.config import OptimizerConfig, SchedulerConfig, TrainingConfig
from treadmill.seq2seq.trainer import Seq2SeqConfig
from treadmill.validation import ConfigError, check_keys, check_range

__all__ = [
    "RunConfig",
    "RunConfigError",
    "load_run_config",
    "parse_overrides",
    "merge_configs",
    "run_config_from_dict",
]

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


def _training(given: Mapping[str, Any], seed: int) -> tuple[TrainingConfig, str | None]:
    """The TrainingConfig (seeded by the run's seed unless it has its own) and resume_from."""
    check_keys("training", given, [*field_names(TrainingConfig), *TrainingConfig.ALIASES, "resume_from"])  # type: ignore[attr-defined]
    for key, cls in (("optimizer", OptimizerConfig), ("scheduler", SchedulerConfig)):
        if isinstance(given.get(key), Mapping):
            check_keys(f"training.{key}", given[key], field_names(cls))
    values = {k: v for k, v in given.items() if k != "resume_from"}
    values.setdefault("seed", seed)
    try:
        return TrainingConfig(**values), given.get("resume_from")
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
        task=section(TaskSection, "task", task),
        model=ModelSection(name=model.pop("name", "transformer"), fields=model),
        data=section(DataSection, "data", raw.get("data") or {}),
        training=training,
        seq2seq=section(Seq2SeqConfig, "seq2seq", raw.get("seq2seq") or {}),
        evaluation=section(EvaluationSection, "evaluation", raw.get("evaluation") or {}),
        diagnostics=section(DiagnosticsSection, "diagnostics", raw.get("diagnostics") or {}),
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
    check_example_fields(config)
    check_freeze_patterns(config)
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
    return {str(key): value for key, value in raw.items()}


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """The checked run config of a YAML file and dotted overrides, with defaults filled in."""
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"Config file '{path}' does not exist. The examples are in examples/*.yaml.")
    return run_config_from_dict(merge_configs(read_yaml(path, "config file"), parse_overrides(overrides)))
