"""Built-in tasks: `get_task(name, **options)` builds one, `list_tasks()` describes them all.

Adding a task: write `build_<name>(*, option=default, ...) -> Task` (keyword-only options, so
the registry can check them) and a `sizes` function with the same options, then add a TaskSpec
to REGISTRY below. See docs/data.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from treadmill.data.tasks.arithmetic import ADDITION_LM_DESCRIPTION, build_addition_lm
from treadmill.data.tasks.base import Task, TaskSpec
from treadmill.data.tasks.fewshot import DESCRIPTION as FEWSHOT_DESCRIPTION
from treadmill.data.tasks.fewshot import build_fewshot_rules, fewshot_fields, fewshot_sizes
from treadmill.data.tasks.files import DESCRIPTION as FILES_DESCRIPTION
from treadmill.data.tasks.files import build_files, files_sizes
from treadmill.data.tasks.forecast import (
    CO2_DESCRIPTION,
    SUNSPOTS_DESCRIPTION,
    build_forecast_co2,
    build_forecast_sunspots,
    co2_sizes,
    sunspots_sizes,
)
from treadmill.data.tasks.g2p import DESCRIPTION as G2P_DESCRIPTION
from treadmill.data.tasks.g2p import build_g2p_cmudict, g2p_sizes
from treadmill.data.tasks.lm import (
    FILES_DESCRIPTION as LM_FILES_DESCRIPTION,
)
from treadmill.data.tasks.lm import (
    SHAKESPEARE_DESCRIPTION,
    build_lm_files,
    build_lm_shakespeare,
    lm_files_sizes,
    lm_shakespeare_sizes,
)
from treadmill.data.tasks.numbers import DESCRIPTION as NUMBERS_DESCRIPTION
from treadmill.data.tasks.numbers import ES_DESCRIPTION as NUMBERS_ES_DESCRIPTION
from treadmill.data.tasks.numbers import (
    build_num2words_en_es,
    build_num2words_en_fr,
    num2words_es_sizes,
    num2words_sizes,
)
from treadmill.data.tasks.shakespeare_genre import DESCRIPTION as GENRE_DESCRIPTION
from treadmill.data.tasks.shakespeare_genre import build_shakespeare_genre, shakespeare_genre_sizes
from treadmill.data.tasks.toy import (
    ADDITION_DESCRIPTION,
    COPY_DESCRIPTION,
    REVERSE_DESCRIPTION,
    SORT_DESCRIPTION,
    build_addition,
    build_copy,
    build_reverse,
    build_sort,
    generated_sizes,
)
from treadmill.validation import ConfigError, closest_hint

__all__ = [
    "REGISTRY",
    "Task",
    "TaskInfo",
    "TaskSpec",
    "get_task",
    "list_tasks",
    "task_fields",
    "task_options",
    "task_sizes",
]

REGISTRY: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("reverse", REVERSE_DESCRIPTION, build_reverse, generated_sizes),
        TaskSpec("copy", COPY_DESCRIPTION, build_copy, generated_sizes),
        TaskSpec("sort", SORT_DESCRIPTION, build_sort, generated_sizes),
        TaskSpec("addition", ADDITION_DESCRIPTION, build_addition, generated_sizes),
        TaskSpec("addition-lm", ADDITION_LM_DESCRIPTION, build_addition_lm, generated_sizes),
        TaskSpec("g2p-cmudict", G2P_DESCRIPTION, build_g2p_cmudict, g2p_sizes),
        TaskSpec("num2words-en-fr", NUMBERS_DESCRIPTION, build_num2words_en_fr, num2words_sizes),
        TaskSpec("num2words-en-es", NUMBERS_ES_DESCRIPTION, build_num2words_en_es, num2words_es_sizes),
        TaskSpec(
            "forecast-sunspots", SUNSPOTS_DESCRIPTION, build_forecast_sunspots, sunspots_sizes
        ),
        TaskSpec("forecast-co2", CO2_DESCRIPTION, build_forecast_co2, co2_sizes),
        TaskSpec("files", FILES_DESCRIPTION, build_files, files_sizes),
        TaskSpec("lm-shakespeare", SHAKESPEARE_DESCRIPTION, build_lm_shakespeare, lm_shakespeare_sizes),
        TaskSpec("lm-files", LM_FILES_DESCRIPTION, build_lm_files, lm_files_sizes),
        TaskSpec("shakespeare-genre", GENRE_DESCRIPTION, build_shakespeare_genre, shakespeare_genre_sizes),
        TaskSpec("fewshot-rules", FEWSHOT_DESCRIPTION, build_fewshot_rules, fewshot_sizes, fewshot_fields),
    ]
}


@dataclass(frozen=True)
class TaskInfo:
    """One line of `treadmill tasks`: name, description, split sizes at the default options."""

    name: str
    description: str
    sizes: dict[str, int]
    options: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        """Record-style access, `info["sizes"]`, as the command line's listing uses it."""
        if key not in self.__dataclass_fields__:
            raise KeyError(
                f"TaskInfo has no field {key!r}; fields: {list(self.__dataclass_fields__)}"
            )
        return getattr(self, key)


def _spec(name: str) -> TaskSpec:
    if name not in REGISTRY:
        raise ConfigError(f"unknown task {name!r}.{closest_hint(name, REGISTRY)} Available tasks: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def task_options(name: str) -> dict[str, Any]:
    """The options task `name` accepts, with their defaults."""
    return _spec(name).option_defaults()


def _check_options(name: str, options: dict[str, Any]) -> None:
    allowed = task_options(name)
    for key in options:
        if key not in allowed:
            raise ConfigError(
                f"task {name!r} has no option {key!r}.{closest_hint(key, allowed)} Its options are: "
                f"{', '.join(f'{k}={v!r}' for k, v in allowed.items()) or 'none'}."
            )


def get_task(name: str, **options: Any) -> Task:
    """Build the built-in task `name` with `options` (see `task_options(name)`)."""
    spec = _spec(name)
    _check_options(name, options)
    return spec.build(**options)


def task_sizes(name: str, **options: Any) -> dict[str, int]:
    """Split sizes of task `name` with `options`, without building it."""
    spec = _spec(name)
    _check_options(name, options)
    return spec.sizes(**options)


def task_fields(name: str, **options: Any) -> dict[str, list[Any]]:
    """The example fields of task `name` with `options` and every value each can take ({} if none)."""
    spec = _spec(name)
    _check_options(name, options)
    return spec.fields(**options) if spec.fields is not None else {}


def list_tasks() -> list[TaskInfo]:
    """Every built-in task with its description, default options and split sizes (no building)."""
    return [
        TaskInfo(spec.name, spec.description, spec.sizes(), spec.option_defaults())
        for spec in REGISTRY.values()
    ]
