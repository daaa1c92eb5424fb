"""TokenFileDataset: training windows read from a token file through np.memmap.

Axis legend: T block_size (the model's context), N tokens in the file.

    dataset[offset] = {"tokens": ids[offset : offset + T], "target": ids[offset + 1 : offset + T + 1],
                       "n_chars": characters those T targets cover}

A window is addressed by its first token, so the order is the sampler's business:

* `RandomWindows` draws offsets uniformly with a generator seeded from (seed, epoch), nanoGPT's
  `torch.randint(len(data) - block_size, (batch_size,))`, made reproducible: the Trainer calls
  `set_epoch` before each epoch (treadmill.training.data_order), and a resumed run skips the batches
  already trained, so the windows continue exactly as in an uninterrupted run.
* `ContiguousWindows` walks the file in non-overlapping windows (every token but the first is a
  target once), for validation, test and perplexity.

From Python, on your own text (docs/lm.md)::

    write_token_files("tokens/", {"train": text}, tokenizer)          # once
    data = TokenFileDataset("tokens/train.bin", block_size=256)        # dtype read from meta.json
    loader = token_file_loader(data, batch_size=32, windows="random", num_samples=32_000, seed=0)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from treadmill.lm.token_files import META_FILE
from treadmill.validation import ConfigError, DataError

__all__ = ["TokenFileDataset", "RandomWindows", "ContiguousWindows", "token_file_loader", "WINDOWS"]

WINDOWS = ("random", "contiguous")


class TokenFileDataset(Dataset):
    """Windows of `block_size` tokens (and their next-token targets) from a flat token file."""

    def __init__(self, path: str | Path, block_size: int, dtype: str | None = None,
                 chars_per_token: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"token file {self.path} does not exist; write it with write_token_files or `treadmill prepare`.")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"TokenFileDataset.block_size must be an integer >= 1, got {block_size!r}.", field="block_size")
        meta = _split_meta(self.path)
        self.dtype = dtype or meta.get("dtype", "uint16")
        self.block_size = block_size
        # mode "r": read-only pages, shared by DataLoader workers; nothing is loaded up front.
        self.tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        if len(self.tokens) < block_size + 1:
            raise DataError(
                f"token file {self.path} holds {len(self.tokens)} tokens; a window of block_size={block_size} "
                f"needs {block_size + 1}. Use a smaller block_size or more text."
            )
        if chars_per_token is None:
            chars, count = meta.get("chars"), meta.get("tokens")
            chars_per_token = chars / count if chars and count else 1.0
        self.chars_per_token = float(chars_per_token)

    @property
    def n_tokens(self) -> int:
        """Tokens in the file."""
        return len(self.tokens)

    def __len__(self) -> int:
        """Number of window offsets (every token that has a full window and target after it)."""
        return len(self.tokens) - self.block_size

    def __getitem__(self, offset: int) -> dict[str, Any]:
        """The window starting at token `offset` and its targets, one token later."""
        chunk = torch.from_numpy(self.tokens[offset : offset + self.block_size + 1].astype(np.int64))  # (T + 1,)
        return {"tokens": chunk[:-1], "target": chunk[1:], "n_chars": self.block_size * self.chars_per_token}


def _split_meta(path: Path) -> dict[str, Any]:
    """This file's dtype and counts from the meta.json beside it (empty when there is none)."""
    meta_path = path.parent / META_FILE
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"token metadata {meta_path} is not valid JSON ({err}); write the token files again.") from err
    split = path.stem
    return {"dtype": meta.get("dtype"), "chars": meta.get("chars", {}).get(split), "tokens": meta.get("tokens", {}).get(split)}


class RandomWindows(Sampler[int]):
    """`num_samples` window offsets drawn uniformly per epoch, from a generator seeded by (seed, epoch)."""

    def __init__(self, dataset: TokenFileDataset, num_samples: int, seed: int = 0) -> None:
        self.n_offsets, self.num_samples, self.seed, self.epoch = len(dataset), int(num_samples), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the windows of `epoch` (the Trainer calls this before each epoch)."""
        self.epoch = int(epoch)

    def offsets(self) -> torch.Tensor:
        """This epoch's window offsets, (num_samples,)."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 7919 + 17) % 2**63)
        return torch.randint(self.n_offsets, (self.num_samples,), generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.offsets().tolist())

    def __len__(self) -> int:
        return self.num_samples


class ContiguousWindows(Sampler[int]):
    """Offsets 0, T, 2T, ... of non-overlapping windows; `limit` spreads at most that many over the file."""

    def __init__(self, dataset: TokenFileDataset, limit: int | None = None) -> None:
        count = (dataset.n_tokens - 1) // dataset.block_size
        starts = np.arange(count) * dataset.block_size
        if limit is not None and limit < count:  # evenly spaced, so a short validation sees the whole split
            starts = starts[np.linspace(0, count - 1, limit).round().astype(np.int64)]
        self.starts = starts.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.starts)

    def __len__(self) -> int:
        return len(self.starts)


def token_file_loader(dataset: TokenFileDataset, batch_size: int, windows: str = "contiguous",
                      num_samples: int | None = None, seed: int = 0, limit: int | None = None,
                      num_workers: int = 0) -> DataLoader:
    """A DataLoader of (tokens, target) windows: `random` (num_samples per epoch) or `contiguous`."""
    if windows not in WINDOWS:
        raise ConfigError(f"windows={windows!r} is not allowed; use one of {', '.join(WINDOWS)}.", field="windows")
    if windows == "random":
        sampler: Sampler[int] = RandomWindows(dataset, num_samples or len(dataset) // dataset.block_size, seed)
    else:
        sampler = ContiguousWindows(dataset, limit)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)
