"""Train a run configuration (a dict) through `treadmill train` into a test's temp directory."""

import contextlib
import io
import json
from pathlib import Path

from treadmill.cli import main


def train_config(root: Path, name: str, raw: dict) -> Path:
    """Write `raw` as root/NAME.yaml, train it quietly into root/NAME and return that run directory."""
    path = root / f"{name}.yaml"
    path.write_text(json.dumps(raw))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(path), "--run-dir", str(root / name)]) == 0
    return root / name
