"""pytorch-treadmill's experiment directories: `BASE/{project}-experiment-{DD-MM-YYYY}-{HH-MM-SSam}-{TZ}`.

A `TrainingConfig` with a `project_name` puts its checkpoints in a new directory of this form under
`checkpoint_dir`, named so that runs sort by project and read in the user's time zone. Unlike the
original, two runs started in the same second get two directories (`...-UTC-2`), never one shared.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from treadmill.validation import ConfigError

__all__ = ["create_experiment_dir", "experiment_dir_name", "is_experiment_dir", "zone"]

_PATTERN = re.compile(r"^.+-experiment-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}-\d{2}[ap]m-.+$")

# The short names pytorch-treadmill documents, as IANA zones.
_SHORT_ZONES = {"IST": "Asia/Kolkata", "EST": "US/Eastern", "PST": "US/Pacific", "UTC": "UTC"}
_GENERIC_FOLDERS = {"src", "lib", "app", "project", "code"}


def zone(name: str) -> dt_timezone | ZoneInfo:
    """The time zone a `timezone` field names (IST, EST, PST, UTC or an IANA name)."""
    if name == "UTC":
        return dt_timezone.utc
    try:
        return ZoneInfo(_SHORT_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"TrainingConfig.timezone={name!r} is not a time zone. Use IST, EST, PST, UTC or an IANA name such "
            "as 'Europe/Paris'.", field="timezone",
        ) from None


def _default_project() -> str:
    folder = Path.cwd().name
    return folder if folder and folder not in _GENERIC_FOLDERS else "experiment"


def experiment_dir_name(project_name: str | None, timezone: str = "UTC", now: datetime | None = None) -> str:
    """`{project}-experiment-{DD-MM-YYYY}-{HH-MM-SSam}-{TZ}` for now (or `now`) in `timezone`."""
    moment = (now or datetime.now(dt_timezone.utc)).astimezone(zone(timezone))
    project = re.sub(r"[^0-9A-Za-z_-]", "_", project_name or _default_project())
    clock = moment.strftime("%I-%M-%S%p").lower()
    return f"{project}-experiment-{moment.strftime('%d-%m-%Y')}-{clock}-{timezone}"


def is_experiment_dir(path: str | os.PathLike[str]) -> bool:
    """Whether path's last part is an experiment directory name (made by create_experiment_dir)."""
    return bool(_PATTERN.match(Path(path).name))


def create_experiment_dir(base_dir: str | os.PathLike[str] = "./checkpoints", project_name: str | None = None,
                          timezone: str = "UTC") -> str:
    """Create and return a new experiment directory under base_dir (a suffix keeps it new)."""
    base = Path(base_dir)
    name = experiment_dir_name(project_name, timezone)
    path, suffix = base / name, 2
    while path.exists():
        path, suffix = base / f"{name}-{suffix}", suffix + 1
    path.mkdir(parents=True)
    return os.path.join(os.fspath(base_dir), path.name)
