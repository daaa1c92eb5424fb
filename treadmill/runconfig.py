"""Run configs for the command line: YAML files plus dotted overrides, validated with clear errors.

A run config has these sections (every one optional but `task`)::

    task:        {name: g2p-cmudict, options: {...}}       # see `treadmill tasks`
    model:       {name: transformer, d_model: 256, ...}     # treadmill.models registry fields
    data:        {batch_size: 64, max_tokens: null, eval_batch_size: 256, num_workers: 0}
    training:    {...TrainingConfig fields..., resume_from: null}
    seq2seq:     {...Seq2SeqConfig fields...}
    evaluation:  {splits: [test], generation: {...}, samples: 5, max_batches: null, average_last: null}
    diagnostics: {enabled: true, every_n_steps: 200, watch: [encoder]}
    sequence_level: {enabled: false, epochs: 1, lr: 1e-4, method: mrt, ...}   # fine-tuning phase
    seed: 0

`load_run_config(path, overrides)` reads the file with OmegaConf, applies `a.b.c=value`
overrides, and checks every key: an unknown one is rejected with the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from treadmill.config import ConfigError, OptimizerConfig, SchedulerConfig, TrainingConfig

__all__ = ["load_run_config", "parse_overrides", "validate_run_config", "RunConfigError", "SECTION_KEYS"]


class RunConfigError(ConfigError):
    """A run config that cannot be used; the message names the key and what to do."""


SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "task": ("name", "options"),
    "data": ("batch_size", "max_tokens", "eval_batch_size", "num_workers"),
    "evaluation": ("splits", "generation", "samples", "max_batches", "average_last"),
    "diagnostics": ("enabled", "every_n_steps", "watch", "on_alarm"),
    "sequence_level": ("enabled", "epochs", "max_steps", "lr", "method", "n_candidates", "candidate_strategy", "temperature",
                       "reward", "mrt_alpha", "mle_weight"),
}
SPLITS = ("train", "valid", "test")
TOP_LEVEL = ("task", "model", "data", "training", "seq2seq", "evaluation", "diagnostics", "sequence_level", "seed", "name")
DEFAULTS: dict[str, Any] = {
    "data": {"batch_size": 64, "max_tokens": None, "eval_batch_size": 256, "num_workers": 0},
    # average_last=N evaluates the mean weights of the last N epoch checkpoints instead of the best one
    "evaluation": {"splits": ["test"], "generation": {}, "samples": 5, "max_batches": None, "average_last": None},
    "diagnostics": {"enabled": True, "every_n_steps": 200, "watch": [], "on_alarm": "warn"},
    # an optional fine-tuning phase after teacher forcing (see treadmill.seq2seq.sequence_trainer)
    "sequence_level": {"enabled": False, "epochs": 1, "max_steps": None, "lr": 1e-4},
    "training": {},
    "seq2seq": {},
    "model": {"name": "transformer"},
    "seed": 0,
}


def _suggest(key: str, valid: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def _dataclass_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_keys(where: str, given: Mapping[str, Any], valid: Iterable[str]) -> None:
    valid = list(valid)
    for key in given:
        if key not in valid:
            full_valid = [f"{where}.{v}" if where else v for v in valid]
            full_key = f"{where}.{key}" if where else str(key)
            raise RunConfigError(
                f"Unknown config key '{full_key}'.{_suggest(full_key, full_valid)} Valid keys here: {', '.join(valid)}."
            )


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


def merge_configs(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `update`, nested sections merged key by key (neither is modified)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_configs(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The validated run config from a YAML file and dotted overrides, with defaults filled in."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"Config file '{path}' does not exist. The examples are in examples/*.yaml.")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:
        raise RunConfigError(f"Cannot read config file '{path}': {err}") from err
    if not isinstance(raw, dict):
        raise RunConfigError(f"Config file '{path}' must hold a mapping of sections (task, model, training, ...).")
    merged = merge_configs(raw, parse_overrides(overrides))  # type: ignore[arg-type]
    return validate_run_config(merged)


def validate_run_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check every section and key; return the config with defaults filled in."""
    _check_keys("", config, TOP_LEVEL)
    if "task" not in config or not isinstance(config["task"], Mapping) or "name" not in config["task"]:
        raise RunConfigError("The config needs a task: `task: {name: reverse}` (see `treadmill tasks`).")
    for section in (*SECTION_KEYS, "task", "model", "training", "seq2seq"):
        if config.get(section) is not None and not isinstance(config[section], Mapping):
            raise RunConfigError(f"Config section '{section}' must be a mapping of keys, got {config[section]!r}.")
    full = merge_configs(DEFAULTS, config)
    full["task"].setdefault("options", {})
    if not isinstance(full["task"]["options"], Mapping):
        raise RunConfigError(f"task.options must be a mapping of the task's options, got {full['task']['options']!r}.")
    for section, keys in SECTION_KEYS.items():
        _check_keys(section, full.get(section) or {}, keys)
    _validate_training(full["training"])
    _validate_values(full)
    _validate_average_last(full["evaluation"]["average_last"], full["training"])
    _validate_seq2seq(full["seq2seq"])
    _validate_generation(full)
    _validate_sequence_level(full["sequence_level"])
    _validate_model(full["model"])
    return full


def _validate_sequence_level(section: Mapping[str, Any]) -> None:
    """The fine-tuning phase's options, checked now rather than after the first phase has trained."""
    from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig

    if not isinstance(section["enabled"], bool):
        raise RunConfigError(f"sequence_level.enabled must be true or false, got {section['enabled']!r}.")
    _check_int("sequence_level.epochs", section["epochs"], 1)
    _check_int("sequence_level.max_steps", section["max_steps"], 1, optional=True)
    lr = section["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise RunConfigError(f"sequence_level.lr must be a number > 0, got {lr!r}.")
    options = {k: v for k, v in section.items() if k not in ("enabled", "epochs", "lr", "max_steps")}
    if options.get("method", "mrt") == "mle":  # more teacher forcing: the control run, no candidates
        return
    try:
        SequenceLevelConfig(**options)
    except (ConfigError, TypeError) as err:
        raise RunConfigError(f"sequence_level: {err}") from err


def _check_int(field: str, value: Any, low: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        allowed = f"{'null or ' if optional else ''}an integer >= {low}"
        raise RunConfigError(f"{field} must be {allowed}, got {value!r}.")


def _validate_values(full: Mapping[str, Any]) -> None:
    """Types and ranges of the data, evaluation and diagnostics sections and the seed."""
    data, evaluation, diagnostics = full["data"], full["evaluation"], full["diagnostics"]
    _check_int("data.batch_size", data["batch_size"], 1)
    _check_int("data.max_tokens", data["max_tokens"], 1, optional=True)
    _check_int("data.eval_batch_size", data["eval_batch_size"], 1)
    _check_int("data.num_workers", data["num_workers"], 0)
    splits = evaluation["splits"]
    if not isinstance(splits, list) or any(split not in SPLITS for split in splits):
        raise RunConfigError(f"evaluation.splits must be a list drawn from {list(SPLITS)}, got {splits!r}.")
    _check_int("evaluation.samples", evaluation["samples"], 0)
    _check_int("evaluation.max_batches", evaluation["max_batches"], 1, optional=True)
    _check_int("diagnostics.every_n_steps", diagnostics["every_n_steps"], 1)
    if not isinstance(diagnostics["enabled"], bool):
        raise RunConfigError(f"diagnostics.enabled must be true or false, got {diagnostics['enabled']!r}.")
    from treadmill.callbacks.alarms import HealthMonitor

    try:
        HealthMonitor(on_alarm=diagnostics["on_alarm"])
    except (ValueError, AttributeError) as err:  # AttributeError: neither a name nor a mapping
        raise RunConfigError(f"diagnostics.on_alarm: {err}") from err
    _check_int("seed", full["seed"], 0)


def _validate_generation(full: Mapping[str, Any]) -> None:
    """Decoding options as validation (seq2seq.generation) and evaluation (merged over it) will use them."""
    from treadmill.decoding.config import GenerationConfig, check_field_names

    during_training = full["seq2seq"].get("generation") or {}
    at_evaluation = full["evaluation"]["generation"] or {}
    for field, options in (("seq2seq.generation", during_training), ("evaluation.generation", at_evaluation)):
        if not isinstance(options, Mapping):
            raise RunConfigError(f"{field} must be a mapping of decoding options, got {options!r}.")
    for field, options in (("seq2seq.generation", during_training),
                           ("evaluation.generation", {**during_training, **at_evaluation})):
        try:
            check_field_names(dict(options))
            GenerationConfig(**options)
        except (ValueError, TypeError) as err:
            raise RunConfigError(f"{field}: {err}") from err


def _validate_training(training: Mapping[str, Any]) -> None:
    fields = _dataclass_keys(TrainingConfig) + list(TrainingConfig.ALIASES) + ["resume_from"]  # type: ignore[attr-defined]
    _check_keys("training", training, fields)
    if isinstance(training.get("optimizer"), Mapping):
        _check_keys("training.optimizer", training["optimizer"], _dataclass_keys(OptimizerConfig))
    if isinstance(training.get("scheduler"), Mapping):
        _check_keys("training.scheduler", training["scheduler"], _dataclass_keys(SchedulerConfig))
    training_config({**training})  # values


def _validate_average_last(average_last: Any, training: Mapping[str, Any]) -> None:
    if average_last is None:
        return
    if isinstance(average_last, bool) or not isinstance(average_last, int) or average_last < 1:
        raise RunConfigError(f"evaluation.average_last must be null or an integer >= 1, got {average_last!r}.")
    kept = training.get("keep_last_checkpoints", TrainingConfig.keep_last_checkpoints)
    if average_last > kept:
        raise RunConfigError(
            f"evaluation.average_last={average_last} averages the last {average_last} checkpoints, but "
            f"training.keep_last_checkpoints={kept} keeps only {kept}. Set training.keep_last_checkpoints>={average_last}."
        )
    if training.get("save_last_model") is False:
        raise RunConfigError(
            "evaluation.average_last averages the epoch checkpoints that training.save_last_model writes; "
            "it is false here. Set training.save_last_model=true or evaluation.average_last=null."
        )


def training_config(training: Mapping[str, Any]) -> TrainingConfig:
    """A TrainingConfig from the `training` section (without the CLI-only resume_from)."""
    values = {k: v for k, v in training.items() if k != "resume_from"}
    try:
        return TrainingConfig(**values)
    except ConfigError as err:
        raise RunConfigError(f"training: {err}") from err


def _validate_seq2seq(section: Mapping[str, Any]) -> None:
    from treadmill.seq2seq.trainer import Seq2SeqConfig

    _check_keys("seq2seq", section, _dataclass_keys(Seq2SeqConfig))
    try:
        Seq2SeqConfig(**section)
    except ConfigError as err:
        raise RunConfigError(f"seq2seq: {err}") from err


def _validate_model(section: Mapping[str, Any]) -> None:
    from treadmill.models.registry import MODELS

    name = section.get("name")
    valid = sorted(MODELS)
    if name not in MODELS:
        raise RunConfigError(f"model.name={name!r} is not a model.{_suggest(str(name), valid)} Valid: {', '.join(valid)}.")
    cfg_cls = MODELS[name][0]
    # vocabulary sizes and forecast shapes come from the task, so users do not give them
    _check_keys("model", section, ["name", *_dataclass_keys(cfg_cls)])
