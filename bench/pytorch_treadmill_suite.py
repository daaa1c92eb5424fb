"""Run pytorch-treadmill 0.6.5's own test suite against this checkout of Treadmill.

    python bench/pytorch_treadmill_suite.py [--keep DIR]

Downloads the package's wheel from PyPI (its tests ship inside it), unpacks only `tests/`, and runs
them with this repository first on the import path, changing nothing in them. Prints each test's
outcome and the pass rate; docs/compat.md lists why each remaining failure is kept.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "pytorch-treadmill==0.6.5"


def fetch_tests(into: Path) -> Path:
    """The package's tests/ folder, unpacked into `into`."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), PACKAGE], check=True)
    wheel = next(into.glob("pytorch_treadmill-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith("tests/"):
                archive.extract(name, into)
    return into / "tests"


def main() -> int:
    """Fetch, run, report; the exit code is pytest's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="unpack into this directory instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        where = args.keep or Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        tests = fetch_tests(where)
        env_path = f"{REPO}"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tests)],
            cwd=where, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        )
        print(done.stdout[-6000:])
        passed = done.stdout.count("\nPASSED ")
        failed = done.stdout.count("\nFAILED ")
        total = passed + failed
        print(f"pytorch-treadmill 0.6.5's suite on this Treadmill: {passed}/{total} passed ({passed / max(total, 1):.0%})")
        return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
