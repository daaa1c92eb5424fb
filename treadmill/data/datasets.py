"""Seq2seq datasets of (source text, target text) pairs, from Python lists, TSV or JSONL files.

An example is a dict:
    {"src": list[int]   source ids, no BOS, ending with EOS (unless src_eos=False),
     "tgt": list[int]   BOS, target ids, EOS,
     "index": int}      position in `dataset.pairs` (the raw text, for BLEU/WER and predictions)
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from treadmill.constants import BOS_ID, EOS_ID
from treadmill.data.text_files import read_text_file
from treadmill.data.tokenizers import Tokenizer
from treadmill.validation import DataError


class Seq2SeqDataset(Dataset):
    """Tokenized (src, tgt) text pairs; tokenized once at construction."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        max_src_len: int | None = None,
        max_tgt_len: int | None = None,
        src_eos: bool = True,
    ) -> None:
        """Tokenize `pairs`; pairs longer than the limits are dropped (counted in `n_dropped`, with a warning).

        `max_src_len` counts source tokens; `max_tgt_len` counts target tokens without BOS/EOS.
        Dropping (not truncating) keeps every target a true answer; use it on training data.
        With `src_eos` (the default, as in fairseq) each source ends with EOS: the encoder then
        sees where the sequence ends, which position-sensitive tasks such as reversal need.
        """
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.pairs: list[tuple[str, str]] = []
        self.src_ids: list[list[int]] = []
        self.tgt_ids: list[list[int]] = []
        self.n_dropped = 0
        for k, (src, tgt) in enumerate(pairs):
            src_ids = src_tokenizer.encode(src)
            tgt_ids = tgt_tokenizer.encode(tgt)
            if not src_ids:
                # An all-padding source row makes attention softmax over nothing (NaN).
                raise ValueError(
                    f"Seq2SeqDataset: pair {k} has an empty source ({src!r}); remove it from the data."
                )
            if (max_src_len is not None and len(src_ids) > max_src_len) or (
                max_tgt_len is not None and len(tgt_ids) > max_tgt_len
            ):
                self.n_dropped += 1
                continue
            self.pairs.append((src, tgt))
            self.src_ids.append([*src_ids, EOS_ID] if src_eos else src_ids)
            self.tgt_ids.append([BOS_ID, *tgt_ids, EOS_ID])
        if self.n_dropped:
            warnings.warn(
                f"Seq2SeqDataset: dropped {self.n_dropped} of {self.n_dropped + len(self.pairs)} pairs "
                f"longer than max_src_len={max_src_len} / max_tgt_len={max_tgt_len} tokens.",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"src": self.src_ids[index], "tgt": self.tgt_ids[index], "index": index}

    def lengths(self) -> list[int]:
        """Per example max(len(src), len(tgt with BOS/EOS)): its padded width in a batch."""
        return [max(len(s), len(t)) for s, t in zip(self.src_ids, self.tgt_ids, strict=True)]

    @property
    def sources(self) -> list[str]:
        """Raw source texts."""
        return [src for src, _ in self.pairs]

    @property
    def targets(self) -> list[str]:
        """Raw target texts."""
        return [tgt for _, tgt in self.pairs]

    @classmethod
    def from_tsv(
        cls,
        path: str | Path,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        **kwargs: Any,
    ) -> Seq2SeqDataset:
        """Read a two-column TSV file (source<TAB>target, no header, no quoting)."""
        return cls(read_tsv_pairs(path), src_tokenizer, tgt_tokenizer, **kwargs)

    @classmethod
    def from_jsonl(
        cls,
        path: str | Path,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        src_key: str = "src",
        tgt_key: str = "tgt",
        **kwargs: Any,
    ) -> Seq2SeqDataset:
        """Read a JSON-lines file with one object per line holding `src_key` and `tgt_key`."""
        return cls(read_jsonl_pairs(path, src_key, tgt_key), src_tokenizer, tgt_tokenizer, **kwargs)


def read_tsv_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(source, target) pairs of a TSV file; a malformed line raises naming file and line."""
    pairs = []
    with _open_data_file(path) as f:
        # QUOTE_NONE: a quote character is ordinary text in tokenized data.
        for lineno, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2 or not row[0].strip():
                raise DataError(
                    f"{path}:{lineno}: expected 'source<TAB>target' (2 columns, non-empty source), "
                    f"got {len(row)} column(s): {row!r}"
                )
            pairs.append((row[0], row[1]))
    return pairs


def read_jsonl_pairs(path: str | Path, src_key: str, tgt_key: str) -> list[tuple[str, str]]:
    """(source, target) pairs of a JSONL file; a malformed line raises naming file and line."""
    pairs = []
    with _open_data_file(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}).") from err
            missing = [k for k in (src_key, tgt_key) if not isinstance(obj, dict) or k not in obj]
            if missing:
                found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise DataError(
                    f"{path}:{lineno}: missing key(s) {missing}; found {found}. "
                    "Pass src_key=/tgt_key= to name the fields."
                )
            src, tgt = obj[src_key], obj[tgt_key]
            if not isinstance(src, str) or not isinstance(tgt, str):
                raise DataError(f"{path}:{lineno}: {src_key!r} and {tgt_key!r} must be strings.")
            if not src.strip():
                raise DataError(f"{path}:{lineno}: {src_key!r} is empty; every pair needs a non-empty source.")
            pairs.append((src, tgt))
    return pairs


def _open_data_file(path: str | Path) -> io.StringIO:
    # read whole and decoded here, so that a bad byte or an unreadable file is named with its line
    return io.StringIO(read_text_file(path), newline="")
