"""Reading what a run directory holds for plots: steps.csv, metrics.csv, config.yaml.

    steps.csv     one row per logged step: step, epoch, elapsed_s, loss, lr, grad_norm, ...
    metrics.csv   one row per epoch: epoch, step, elapsed_s, train metrics, val_ metrics
    config.yaml   the resolved run config (`treadmill train`), for labelling runs by what differs
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_metrics", "read_steps", "read_config", "run_labels"]

# Keys that say where a run lives rather than what it is: never a reason to tell runs apart.
_NOT_SETTINGS = ("training.checkpoint_dir", "training.resume_from")


def _to_float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _read_table(path: Path) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        for name in reader.fieldnames or []:
            columns[name] = []
        for row in reader:
            for name in columns:
                columns[name].append(_to_float(row.get(name)))
    return columns


def read_metrics(run_dir: str | Path) -> dict[str, list[float]]:
    """The columns of a run's metrics.csv as float lists (empty cells become NaN)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: is {run_dir} a run directory written with CSVLogger (treadmill train)?"
        )
    return _read_table(path)


def read_steps(run_dir: str | Path) -> dict[str, list[float]]:
    """The columns of a run's steps.csv (one row per logged step); {} for a run without one."""
    path = Path(run_dir) / "steps.csv"
    return _read_table(path) if path.exists() else {}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's config.yaml as {dotted.key: value}; {} when the run has none."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    return _flatten(loaded) if isinstance(loaded, Mapping) else {}


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key shares (lr, not training.optimizer.lr)."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(other == suffix or other.endswith("." + suffix) for other in keys) == 1:
                break
        short[key] = suffix
    return short


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_labels(run_dirs: Sequence[str | Path], max_keys: int = 4) -> list[str]:
    """Legend labels: the config values that differ between the runs (`lr=0.003, d_model=64`),
    else the directory names (with their parent when names repeat)."""
    dirs = [Path(d) for d in run_dirs]
    names = [d.name or str(d) for d in dirs]
    if len(set(names)) < len(names):
        names = [f"{d.parent.name}/{d.name}" for d in dirs]
    configs = [read_config(d) for d in dirs] if len(dirs) > 1 else []
    keys = list(dict.fromkeys(k for c in configs for k in c if k not in _NOT_SETTINGS))
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    if not differing:
        return names
    short = _short_names(differing)
    labels = []
    for config in configs:
        parts = [f"{short[k]}={_value_text(config.get(k))}" for k in differing[:max_keys]]
        labels.append(", ".join(parts) + (", ..." if len(differing) > max_keys else ""))
    if len(set(labels)) < len(labels):  # the shown keys do not tell them apart: say which run
        labels = [f"{name}: {label}" for name, label in zip(names, labels, strict=True)]
    return labels
