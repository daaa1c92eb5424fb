"""Checkers: verifiable rewards that judge an output from its source alone, without a reference.

A task that can check its answers sets `Task.checker(source, output) -> float`;
`sequence_level.reward: checker` then rewards any correct output, not only the reference.
"""

from __future__ import annotations

import re

__all__ = ["CORRECT", "WRONG", "MALFORMED", "check_addition"]

CORRECT, WRONG, MALFORMED = 1.0, 0.0, -1.0

_SOURCE = re.compile(r"(\d+)\+(\d+)=?")
_NUMBER = re.compile(r"0|[1-9]\d*")  # no leading zeros, no sign


def check_addition(source: str, output: str) -> float:
    """1.0 if `output` is the sum of the source's operands ("12+34=" or "1 2 + 3 4"), 0.0 for
    another number, -1.0 (the minimum) for anything that is not a number without leading zeros."""
    compact_source = "".join(source.split())
    match = _SOURCE.fullmatch(compact_source)
    if match is None:
        raise ValueError(f"check_addition: source {source!r} is not an addition 'a+b' or 'a+b='.")
    answer = "".join(output.split())
    if _NUMBER.fullmatch(answer) is None:
        return MALFORMED
    return CORRECT if int(answer) == int(match.group(1)) + int(match.group(2)) else WRONG
