"""Stable train/valid/test assignment by a cryptographic hash of each key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

SPLIT_NAMES = ("train", "valid", "test")


def stable_unit(key: str, salt: str = "treadmill") -> float:
    """A number in [0, 1) fixed by (salt, key): same on every machine, run and Python version."""
    # hashlib, not hash(): Python salts str hashes per process (PYTHONHASHSEED).
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def stable_split(
    keys: Iterable[str],
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    salt: str = "treadmill",
) -> list[str]:
    """Assign each key to "train"/"valid"/"test" by its hash; independent of order and of other keys.

    Equal keys always land in the same split, so splitting by a word (or a source text) keeps all
    of its examples on one side.
    """
    if len(fractions) != len(SPLIT_NAMES):
        raise ValueError(
            f"stable_split: fractions must give {len(SPLIT_NAMES)} values for {SPLIT_NAMES}, "
            f"got {tuple(fractions)}."
        )
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"stable_split: fractions must be >= 0 and sum to 1, got {tuple(fractions)} "
            f"(sum {sum(fractions):.6f})."
        )
    bounds = [fractions[0], fractions[0] + fractions[1]]
    out = []
    for key in keys:
        u = stable_unit(key, salt)
        out.append("train" if u < bounds[0] else "valid" if u < bounds[1] else "test")
    return out
