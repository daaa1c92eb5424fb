"""files: your own (source, target) pairs from TSV or JSONL files, trained from the command line.

    task: {name: files, options: {train: data/train.tsv, valid: data/valid.tsv, test: data/test.tsv,
                                  tokenizer: word}}

Paths are relative to the directory `treadmill` runs in. A `.tsv` file holds source<TAB>target
per line; a `.jsonl` file one object per line with the fields `src_key` and `tgt_key`. Without a
valid or test file, that split is drawn from the training file by a stable hash of the source
(`held_out_fraction` each), so every example of one source lands on the same side. Tokenizers
(`char`, `word` or `bpe` with `bpe_vocab_size`) are fitted on the training split alone, one per side.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from treadmill.data.datasets import Seq2SeqDataset, read_jsonl_pairs, read_tsv_pairs
from treadmill.data.splits import stable_split
from treadmill.data.tasks.base import Task
from treadmill.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer

DESCRIPTION = "Your own pairs: task.options.train=FILE (.tsv or .jsonl), optional valid/test files."
TOKENIZERS = ("char", "word", "bpe")
SPLIT_SALT = "treadmill-files"


def read_pairs(path: str | Path, src_key: str = "src", tgt_key: str = "tgt") -> list[tuple[str, str]]:
    """The (source, target) pairs of a .tsv or .jsonl file, chosen by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tsv", ".txt"):
        return read_tsv_pairs(path)
    if suffix in (".jsonl", ".json"):
        return read_jsonl_pairs(path, src_key, tgt_key)
    raise ValueError(f"data file {path}: unknown format {suffix or '(no suffix)'!r}; use .tsv or .jsonl.")


def _split_pairs(
    train: str | None, valid: str | None, test: str | None, src_key: str, tgt_key: str, held_out_fraction: float
) -> dict[str, list[tuple[str, str]]]:
    if train is None:
        raise ValueError("task 'files' needs task.options.train=PATH, a .tsv or .jsonl file of pairs.")
    if not 0.0 < held_out_fraction < 0.5:
        raise ValueError(f"task.options.held_out_fraction must be in (0, 0.5), got {held_out_fraction!r}.")
    pairs = {"train": read_pairs(train, src_key, tgt_key)}
    given = {"valid": valid, "test": test}
    missing = [split for split, path in given.items() if path is None]
    if missing:
        # Each missing split takes held_out_fraction of the training file, by the hash of the source.
        fractions = {"valid": held_out_fraction if valid is None else 0.0, "test": held_out_fraction if test is None else 0.0}
        sides = stable_split((src for src, _ in pairs["train"]),
                             (1.0 - sum(fractions.values()), fractions["valid"], fractions["test"]), salt=SPLIT_SALT)
        drawn = {split: [p for p, side in zip(pairs["train"], sides, strict=True) if side == split]
                 for split in ("train", *missing)}
        pairs = drawn
    for split, path in given.items():
        if path is not None:
            pairs[split] = read_pairs(path, src_key, tgt_key)
    if not pairs["train"]:
        raise ValueError(f"data file {train}: no training pairs left; it needs at least one line.")
    return {split: pairs[split] for split in ("train", "valid", "test")}


def _tokenizer(kind: str, bpe_vocab_size: int) -> Tokenizer:
    if kind not in TOKENIZERS:
        raise ValueError(f"task.options.tokenizer={kind!r} is not a tokenizer; use one of {', '.join(TOKENIZERS)}.")
    if kind == "bpe":
        return BPETokenizer(vocab_size=bpe_vocab_size)
    return CharTokenizer() if kind == "char" else WordTokenizer()


def build_files(
    *,
    train: str | None = None,
    valid: str | None = None,
    test: str | None = None,
    tokenizer: str = "word",
    bpe_vocab_size: int = 8000,
    src_key: str = "src",
    tgt_key: str = "tgt",
    held_out_fraction: float = 0.05,
) -> Task:
    """Build the task from the files; tokenizers are fitted on the training pairs."""
    pairs = _split_pairs(train, valid, test, src_key, tgt_key, held_out_fraction)
    src_tokenizer = _tokenizer(tokenizer, bpe_vocab_size).fit(src for src, _ in pairs["train"])
    tgt_tokenizer = _tokenizer(tokenizer, bpe_vocab_size).fit(tgt for _, tgt in pairs["train"])
    splits: dict[str, Dataset] = {
        split: Seq2SeqDataset(split_pairs, src_tokenizer, tgt_tokenizer) for split, split_pairs in pairs.items()
    }
    return Task(
        name="files",
        description=DESCRIPTION,
        splits=splits,
        src_tokenizer=src_tokenizer,
        tgt_tokenizer=tgt_tokenizer,
        metadata={"files": {"train": train, "valid": valid, "test": test}, "tokenizer": tokenizer},
    )


def files_sizes(
    *,
    train: str | None = None,
    valid: str | None = None,
    test: str | None = None,
    tokenizer: str = "word",
    bpe_vocab_size: int = 8000,
    src_key: str = "src",
    tgt_key: str = "tgt",
    held_out_fraction: float = 0.05,
) -> dict[str, int]:
    """Pairs per split (none until a training file is given), without fitting tokenizers."""
    if train is None:
        return {}
    pairs = _split_pairs(train, valid, test, src_key, tgt_key, held_out_fraction)
    return {split: len(split_pairs) for split, split_pairs in pairs.items()}
