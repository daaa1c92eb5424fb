"""A task's splits as plain text files, so other tools (nanoGPT, fairseq, a spreadsheet) read the same data.

    language models   train.txt / valid.txt / test.txt: each split's text exactly (they concatenate
                      to the whole corpus)
    sequence tasks    one example per line: source<TAB>target
    forecasts         one value per line: the series' values in the split's target range (raw units)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["split_texts", "export_task", "SPLITS"]

SPLITS = ("train", "valid", "test")


def split_texts(task: Any) -> dict[str, str]:
    """Each split's plain-text form (see the module docstring)."""
    if task.kind == "lm":
        return {split: task.texts[split] for split in SPLITS if split in task.texts}
    if task.kind == "forecast":
        raw, bounds = task.metadata["raw_series"], task.metadata["split_bounds"]
        ranges = {"train": (0, bounds["train_end"]), "valid": (bounds["train_end"], bounds["valid_end"]),
                  "test": (bounds["valid_end"], bounds["n"])}
        return {split: "".join(f"{_number(float(v))}\n" for v in raw[start:end]) for split, (start, end) in ranges.items()}
    texts = {}
    for split in SPLITS:
        if split in task.splits:
            pairs = task.splits[split].pairs
            texts[split] = "".join(f"{_one_line(src)}\t{_one_line(tgt)}\n" for src, tgt in pairs)
    return texts


def _one_line(text: str) -> str:
    # A tab or newline inside a field would shift every later column or row.
    return text.replace("\t", " ").replace("\n", " ")


def _number(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else f"{value:.10g}"


def export_task(task: Any, directory: str | Path) -> dict[str, Path]:
    """Write train.txt / valid.txt / test.txt into `directory`; returns the paths by split."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, text in split_texts(task).items():
        path = directory / f"{split}.txt"
        # newline="": the text is written byte for byte, so the files concatenate to the corpus
        with path.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        paths[split] = path
    return paths
