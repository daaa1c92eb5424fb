"""Generated toy tasks: reverse, copy, sort (symbols "a0".."a{n-1}") and addition (digits).

Text is space-separated tokens ("a7 a3 a12" -> "a12 a3 a7"; addition "1 2 3 + 4 5" -> "1 6 8"),
read by a WordTokenizer whose vocabulary is the whole alphabet (so no symbol is ever UNK).
Sources are unique across all splits: test sources are drawn first, then valid, then train,
so no test or valid sequence is ever seen in training.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from treadmill.data.datasets import Seq2SeqDataset
from treadmill.data.tasks.base import Task
from treadmill.data.tasks.checkers import check_addition
from treadmill.data.tokenizers import WordTokenizer
from treadmill.data.vocab import Vocab

# Refuse requests that need more than this share of all distinct sources: rejection sampling
# would crawl, and the task would no longer be a sample of a larger space.
_MAX_SHARE = 0.5


def _check_options(name: str, min_len: int, max_len: int, counts: dict[str, int]) -> None:
    if min_len < 1 or max_len < min_len:
        raise ValueError(
            f"task {name!r}: need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}."
        )
    for key, value in counts.items():
        if value < 0:
            raise ValueError(f"task {name!r}: {key} must be >= 0, got {value}.")


def _draw_unique(
    name: str,
    draw: Callable[[random.Random], tuple[int, ...]],
    n_total: int,
    capacity: int,
    rng: random.Random,
) -> list[tuple[int, ...]]:
    """Draw `n_total` distinct items with `draw`, in draw order."""
    if n_total > _MAX_SHARE * capacity:
        raise ValueError(
            f"task {name!r}: {n_total} distinct examples requested but only {capacity} exist; "
            "lower n_train/n_valid/n_test or widen alphabet_size / the length range."
        )
    seen: set[tuple[int, ...]] = set()
    items: list[tuple[int, ...]] = []
    while len(items) < n_total:
        item = draw(rng)
        if item not in seen:
            seen.add(item)
            items.append(item)
    return items


def _split(items: list, n_train: int, n_valid: int, n_test: int) -> dict[str, list]:
    return {
        "test": items[:n_test],
        "valid": items[n_test : n_test + n_valid],
        "train": items[n_test + n_valid : n_test + n_valid + n_train],
    }


def _symbol_task(
    name: str,
    description: str,
    transform: Callable[[tuple[int, ...]], tuple[int, ...]],
    alphabet_size: int,
    min_len: int,
    max_len: int,
    n_train: int,
    n_valid: int,
    n_test: int,
    seed: int,
) -> Task:
    _check_options(
        name, min_len, max_len, {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    )
    if alphabet_size < 2:
        raise ValueError(f"task {name!r}: alphabet_size must be >= 2, got {alphabet_size}.")
    symbols = [f"a{i}" for i in range(alphabet_size)]

    def draw(rng: random.Random) -> tuple[int, ...]:
        length = rng.randint(min_len, max_len)
        return tuple(rng.randrange(alphabet_size) for _ in range(length))

    capacity = sum(alphabet_size**length for length in range(min_len, max_len + 1))
    items = _draw_unique(name, draw, n_train + n_valid + n_test, capacity, random.Random(seed))
    tokenizer = WordTokenizer(Vocab(symbols))

    def text(seq: tuple[int, ...]) -> str:
        return " ".join(symbols[i] for i in seq)

    splits = {
        split: Seq2SeqDataset([(text(s), text(transform(s))) for s in seqs], tokenizer, tokenizer)
        for split, seqs in _split(items, n_train, n_valid, n_test).items()
    }
    return Task(
        name=name,
        description=description,
        splits={k: splits[k] for k in ("train", "valid", "test")},
        src_tokenizer=tokenizer,
        tgt_tokenizer=tokenizer,
        metadata={
            "alphabet_size": alphabet_size,
            "min_len": min_len,
            "max_len": max_len,
            "seed": seed,
        },
    )


REVERSE_DESCRIPTION = (
    "Reverse a sequence of symbols (generated; test sequences unseen in training)."
)
COPY_DESCRIPTION = "Copy a sequence of symbols (generated; test sequences unseen in training)."
SORT_DESCRIPTION = "Sort symbols by index, a3 < a12 (generated; test sequences unseen in training)."
ADDITION_DESCRIPTION = "Add two integers written digit by digit: '1 2 + 3 4' -> '4 6' (generated)."


def build_reverse(
    *,
    alphabet_size: int = 20,
    min_len: int = 4,
    max_len: int = 24,
    n_train: int = 50_000,
    n_valid: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
) -> Task:
    """The reversal task of seed 000."""
    return _symbol_task(
        "reverse", REVERSE_DESCRIPTION, lambda s: s[::-1],
        alphabet_size, min_len, max_len, n_train, n_valid, n_test, seed,
    )  # fmt: skip


def build_copy(
    *,
    alphabet_size: int = 20,
    min_len: int = 4,
    max_len: int = 24,
    n_train: int = 50_000,
    n_valid: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
) -> Task:
    """Identity mapping: the target equals the source."""
    return _symbol_task(
        "copy", COPY_DESCRIPTION, lambda s: s,
        alphabet_size, min_len, max_len, n_train, n_valid, n_test, seed,
    )  # fmt: skip


def build_sort(
    *,
    alphabet_size: int = 20,
    min_len: int = 4,
    max_len: int = 24,
    n_train: int = 50_000,
    n_valid: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
) -> Task:
    """Sort the symbols by their index (duplicates kept)."""
    return _symbol_task(
        "sort", SORT_DESCRIPTION, lambda s: tuple(sorted(s)),
        alphabet_size, min_len, max_len, n_train, n_valid, n_test, seed,
    )  # fmt: skip


def _count_numbers(n_digits: int) -> int:
    """How many integers have exactly `n_digits` digits (0 counts as one digit)."""
    return 10 if n_digits == 1 else 9 * 10 ** (n_digits - 1)


def build_addition(
    *,
    min_len: int = 4,
    max_len: int = 24,
    n_train: int = 50_000,
    n_valid: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
) -> Task:
    """a + b with each operand's digit count uniform in [min_len, max_len] (no leading zeros)."""
    name = "addition"
    _check_options(
        name, min_len, max_len, {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    )

    def draw(rng: random.Random) -> tuple[int, ...]:
        operands = []
        for _ in range(2):
            n_digits = rng.randint(min_len, max_len)
            low = 0 if n_digits == 1 else 10 ** (n_digits - 1)
            operands.append(rng.randrange(low, 10**n_digits))
        return tuple(operands)

    per_operand = sum(_count_numbers(d) for d in range(min_len, max_len + 1))
    items = _draw_unique(
        name, draw, n_train + n_valid + n_test, per_operand**2, random.Random(seed)
    )
    src_tokenizer = WordTokenizer(Vocab([*"0123456789", "+"]))
    tgt_tokenizer = WordTokenizer(Vocab(list("0123456789")))

    def pair(ab: tuple[int, ...]) -> tuple[str, str]:
        a, b = ab
        return f"{' '.join(str(a))} + {' '.join(str(b))}", " ".join(str(a + b))

    splits = {
        split: Seq2SeqDataset([pair(ab) for ab in items_], src_tokenizer, tgt_tokenizer)
        for split, items_ in _split(items, n_train, n_valid, n_test).items()
    }
    return Task(
        name=name,
        description=ADDITION_DESCRIPTION,
        splits={k: splits[k] for k in ("train", "valid", "test")},
        src_tokenizer=src_tokenizer,
        tgt_tokenizer=tgt_tokenizer,
        metadata={"min_len": min_len, "max_len": max_len, "seed": seed},
        checker=check_addition,
    )


def generated_sizes(
    *, n_train: int = 50_000, n_valid: int = 1000, n_test: int = 1000, **_: object
) -> dict[str, int]:
    """Split sizes of a generated task, known without generating it."""
    return {"train": n_train, "valid": n_valid, "test": n_test}
