"""Writes dates_{train,valid,test}.tsv for examples/files.yaml: dates as people write them -> ISO 8601.

    python examples/data/make_dates.py

The files in this directory were written by it (seed 0). Every date appears in one split only.
"""

from __future__ import annotations

import datetime
import random
from pathlib import Path

FORMATS = (
    "%d %B %Y",         # 24 November 2026
    "%B %d, %Y",        # November 24, 2026
    "%b %d, %Y",        # Nov 24, 2026
    "%d %b %Y",         # 24 Nov 2026
    "%A, %d %B %Y",     # Tuesday, 24 November 2026
    "%a %d %b %Y",      # Tue 24 Nov 2026
    "%m/%d/%Y",         # 11/24/2026
    "%d.%m.%Y",         # 24.11.2026
    "%Y/%m/%d",         # 2026/11/24
    "%d-%b-%y",         # 24-Nov-26 (two-digit years here all mean 1950-2049)
)
SIZES = {"train": 3000, "valid": 250, "test": 250}


def main(seed: int = 0) -> None:
    """Draw distinct dates in 1950-2049, give each a random written form, write the three files."""
    rng = random.Random(seed)
    first, last = datetime.date(1950, 1, 1).toordinal(), datetime.date(2049, 12, 31).toordinal()
    days = rng.sample(range(first, last + 1), sum(SIZES.values()))
    out_dir = Path(__file__).parent
    start = 0
    for split, size in SIZES.items():
        lines = []
        for ordinal in days[start:start + size]:
            date = datetime.date.fromordinal(ordinal)
            lines.append(f"{date.strftime(rng.choice(FORMATS))}\t{date.isoformat()}\n")
        (out_dir / f"dates_{split}.tsv").write_text("".join(lines))
        start += size


if __name__ == "__main__":
    main()
