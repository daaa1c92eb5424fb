"""Reading the user's text and JSON files, with every failure named by file (and line).

A missing or unreadable file, bytes that are not UTF-8, and JSON that is malformed or nested
deeper than Python's recursion limit each raise a `DataError` that says which file, where in it,
and why, instead of a bare `UnicodeDecodeError`, `PermissionError` or `RecursionError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from treadmill.training.io_errors import describe_os_error
from treadmill.validation import DataError

__all__ = ["decode_utf8", "read_json_file", "read_text_file"]


def decode_utf8(data: bytes, source: str) -> str:
    """`data` as UTF-8 text; a DataError naming `source`, the line and the byte offset if it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        bad = data[err.start : err.end].hex(" ")
        raise DataError(
            f"{source}:{line}: byte(s) {bad} at column {column} (byte offset {err.start}) are not valid UTF-8. "
            "Treadmill reads text as UTF-8: re-encode the file (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def read_text_file(path: str | Path, what: str = "data file") -> str:
    """The UTF-8 text of a file; FileNotFoundError or DataError naming the file if it is missing,
    unreadable or not UTF-8."""
    path = Path(path)
    if not path.exists():  # FileNotFoundError, as open() would raise, with the file named
        raise FileNotFoundError(f"The {what} {str(path)!r} does not exist.")
    if path.is_dir():
        raise DataError(f"The {what} {str(path)!r} is a directory, not a file.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"The {what} {str(path)!r} cannot be read: {describe_os_error(err)}.") from err
    return decode_utf8(data, str(path))


def read_json_file(path: str | Path, what: str = "JSON file") -> Any:
    """The parsed content of a JSON file; a DataError naming the file and the position of a fault."""
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: the {what} is not valid JSON ({err.msg}, column {err.colno}).") from err
    except RecursionError:
        raise DataError(
            f"The {what} {str(path)!r} is nested too deeply to read (Python's recursion limit); it was not "
            "written by Treadmill, or it is corrupted."
        ) from None
