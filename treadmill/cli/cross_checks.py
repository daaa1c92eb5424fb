"""Checks that need two sections at once, run at config load: example fields the task has, weights
for values that occur, freeze patterns that match modules of the model."""

from __future__ import annotations

from typing import Any

from treadmill.cli.sections import RunConfigError
from treadmill.validation import ConfigError

__all__ = ["check_example_fields", "check_freeze_patterns"]


def _fields(config: Any) -> dict[str, list[Any]]:
    from treadmill.data.tasks import task_fields

    return task_fields(config.task.name, **config.task.options)


def check_example_fields(config: Any) -> None:
    """`evaluation.group_by` and `data.sample_weights` name fields of the task, with values it has."""
    wanted = config.evaluation.group_fields()
    weighting = config.data.weight_of()
    if not wanted and weighting is None:
        return
    try:
        fields = _fields(config)
    except (TypeError, ValueError) as err:  # an option value the task refuses: build_task says it fully
        raise RunConfigError(f"task.options of {config.task.name!r}: {err}") from err
    listing = ", ".join(fields) if fields else "none"
    for name in wanted:
        if name not in fields:
            raise RunConfigError(f"evaluation.group_by={name!r}: task {config.task.name!r} has no example field "
                                 f"{name!r}; its fields: {listing}.", field="group_by")
    if weighting is None:
        return
    by, weights = weighting
    if by not in fields:
        raise RunConfigError(f"data.sample_weights.by={by!r}: task {config.task.name!r} has no example field "
                             f"{by!r}; its fields: {listing}.", field="sample_weights")
    occurring = {str(v) for v in fields[by]}
    never = [v for v in weights if v not in occurring]
    if never:
        raise RunConfigError(f"data.sample_weights.weights gives weights for {by}={', '.join(never)}, which never "
                             f"occur with these task options; {by} takes the values {', '.join(sorted(occurring))}.",
                             field="sample_weights")


def check_freeze_patterns(config: Any) -> None:
    """Every `training.freeze` pattern matches a module of the model (built with placeholder sizes)."""
    if not config.training.freeze:
        return
    from treadmill.callbacks.freeze import frozen_parameter_names
    from treadmill.models.registry import MODELS

    model = MODELS[config.model.name][1](config.model.build_config())
    try:
        frozen_parameter_names(model, config.training.freeze)
    except ConfigError as err:
        raise RunConfigError(str(err), field="freeze") from err
