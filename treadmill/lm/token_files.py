"""Token files: a text corpus tokenized once into a flat uint16/uint32 array on disk, plus metadata.

    <dir>/<split>.bin    the split's token ids, native byte order, no header (np.memmap reads it)
    <dir>/meta.json      tokenizer, dtype, token and character counts per split, sha256 of each
                         split's source text

Training reads the .bin files through `np.memmap` (TokenFileDataset), so a corpus larger than memory
costs only the pages the windows touch. The source text's hash is kept so that token files made from
other text (an edited corpus, another cleaning) are refused instead of silently trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from treadmill.validation import DataError

__all__ = ["DTYPES", "META_FILE", "text_sha256", "choose_dtype", "write_token_file", "write_token_files",
           "read_meta", "check_meta", "token_file_path"]

DTYPES = ("auto", "uint16", "uint32")
META_FILE = "meta.json"
_LIMITS = {"uint16": 2**16, "uint32": 2**32}


def text_sha256(text: str) -> str:
    """The sha256 of the text's UTF-8 bytes, as hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def choose_dtype(vocab_size: int, dtype: str = "auto") -> str:
    """The dtype for ids below `vocab_size`: uint16 when they fit ("auto"), or the one asked for if it fits."""
    if dtype not in DTYPES:
        raise DataError(f"token file dtype {dtype!r} is not allowed; use one of {', '.join(DTYPES)}.")
    if dtype == "auto":
        return "uint16" if vocab_size <= _LIMITS["uint16"] else "uint32"
    if vocab_size > _LIMITS[dtype]:
        raise DataError(
            f"token ids go up to {vocab_size - 1} (vocab_size {vocab_size}), which does not fit {dtype} "
            f"(at most {_LIMITS[dtype] - 1}); use dtype uint32 or auto, or a smaller vocabulary."
        )
    return dtype


def token_file_path(directory: str | Path, split: str) -> Path:
    """Where a split's token ids are stored."""
    return Path(directory) / f"{split}.bin"


def write_token_file(ids: Iterable[int] | np.ndarray, path: str | Path, dtype: str) -> int:
    """Write token ids as a flat array of `dtype`, atomically; returns the number of tokens."""
    array = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= _LIMITS[dtype]):
        raise DataError(
            f"token file {path}: an id ({int(array.max())}) does not fit {dtype} (at most {_LIMITS[dtype] - 1}); "
            "use dtype uint32 or auto."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    array.astype(dtype).tofile(temporary)
    os.replace(temporary, path)  # a crash mid-write never leaves a truncated .bin behind
    return int(array.size)


def write_token_files(directory: str | Path, texts: Mapping[str, str], tokenizer: Any,
                      dtype: str = "auto", extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Tokenize each split's text with `tokenizer` into <directory>/<split>.bin and write meta.json.

    Returns the metadata: tokenizer (its to_dict()), dtype, per-split token and character counts,
    and the sha256 of each split's text.
    """
    chosen = choose_dtype(int(tokenizer.vocab_size), dtype)
    meta: dict[str, Any] = {"tokenizer": tokenizer.to_dict(), "vocab_size": int(tokenizer.vocab_size), "dtype": chosen,
                            "tokens": {}, "chars": {}, "sha256": {}, **dict(extra or {})}
    for split, text in texts.items():
        if not text:
            raise DataError(f"split {split!r} has no text to tokenize; give it at least one character.")
        meta["tokens"][split] = write_token_file(tokenizer.encode(text), token_file_path(directory, split), chosen)
        meta["chars"][split] = len(text)
        meta["sha256"][split] = text_sha256(text)
    path = Path(directory) / META_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    os.replace(temporary, path)  # meta.json last: its presence means the .bin files are complete
    return meta


def read_meta(directory: str | Path) -> dict[str, Any] | None:
    """The token files' metadata, or None when the directory has none (not prepared yet)."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"token metadata {path} is not valid JSON ({err}); delete {path.parent} to prepare it again.") from err
    if not isinstance(meta, dict) or not {"dtype", "tokens", "sha256"} <= set(meta):
        raise DataError(f"token metadata {path} lacks dtype/tokens/sha256: it was not written by Treadmill.")
    return meta


def check_meta(directory: str | Path, meta: Mapping[str, Any], texts: Mapping[str, str]) -> None:
    """Refuse token files that were made from other text, or whose .bin files are missing or cut short."""
    for split, text in texts.items():
        digest = text_sha256(text)
        if meta["sha256"].get(split) != digest:
            raise DataError(
                f"token files in {directory} were made from other text: the sha256 of split {split!r} in "
                f"{Path(directory) / META_FILE} is {meta['sha256'].get(split)}, the text now hashes to {digest}. "
                "Run `treadmill prepare CONFIG --force` (or delete the directory) to tokenize it again."
            )
        path = token_file_path(directory, split)
        expected = int(meta["tokens"][split]) * np.dtype(meta["dtype"]).itemsize
        if not path.is_file() or path.stat().st_size != expected:
            raise DataError(f"token file {path} is missing or not {expected} bytes; run `treadmill prepare CONFIG --force`.")
