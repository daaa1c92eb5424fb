"""num2words-en-fr: English number words -> French number words, both written by `num2words`.

Integers are drawn log-uniformly in [1, 10^9) (n = floor(10^u), u ~ U(0, 9)) and are unique
across all splits (test drawn first, then valid, then train), so no test number is seen in
training. Texts are exactly num2words' strings ("twenty-two" -> "vingt-deux"). Word tokenizers
split hyphens and commas off as tokens of their own, marked with the joiner so that decoding
restores the exact string: "vingt-deux" -> ["vingt", "￭-￭", "deux"] -> "vingt-deux".
The vocabularies are built from 0..999 and k*1000, k*10^6 (k < 1000) plus small offsets, which
contain every token num2words uses below 10^9 (checked on 200k random numbers), so they do not
depend on the sample and no test word is UNK.
"""

from __future__ import annotations

import functools
import random

from torch.utils.data import Dataset

from treadmill.data.datasets import Seq2SeqDataset
from treadmill.data.tasks.base import Task
from treadmill.data.tokenizers import WordTokenizer

DESCRIPTION = "English number words -> French number words (num2words; numbers up to 10^9)."
MAX_EXPONENT = 9


def _words(n: int, lang: str) -> str:
    from num2words import num2words

    return str(num2words(n, lang=lang))


@functools.lru_cache(maxsize=1)
def _tokenizers() -> tuple[WordTokenizer, WordTokenizer]:
    """(English, French) tokenizers over the closed number vocabulary."""
    # Offsets 1 and 100 (and 1000 for millions) bring in the joiners num2words puts between groups
    # ("one thousand, one hundred", "deux mille un").
    coverage = [
        *range(1000),
        *(k * 1000 + j for k in range(1, 1000) for j in (0, 1, 100)),
        *(k * 10**6 + j for k in range(1, 1000) for j in (0, 1, 100, 1000)),
    ]
    en = WordTokenizer(punctuation="-,").fit(_words(n, "en") for n in coverage)
    fr = WordTokenizer(punctuation="-,").fit(_words(n, "fr") for n in coverage)
    return en, fr


def sample_numbers(n_total: int, seed: int) -> list[int]:
    """`n_total` distinct integers, log-uniform in [1, 10^9), in draw order."""
    rng = random.Random(seed)
    seen: set[int] = set()
    out: list[int] = []
    while len(out) < n_total:
        n = int(10 ** rng.uniform(0, MAX_EXPONENT))
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def build_num2words_en_fr(
    *, n_train: int = 50_000, n_valid: int = 1000, n_test: int = 1000, seed: int = 0
) -> Task:
    """Build the task (about 0.25 ms per pair: ~13 s at the default sizes)."""
    for key, value in {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}.items():
        if value < 0:
            raise ValueError(f"task 'num2words-en-fr': {key} must be >= 0, got {value}.")
    numbers = sample_numbers(n_train + n_valid + n_test, seed)
    by_split = {
        "train": numbers[n_test + n_valid :],
        "valid": numbers[n_test : n_test + n_valid],
        "test": numbers[:n_test],
    }
    src_tokenizer, tgt_tokenizer = _tokenizers()
    splits: dict[str, Dataset] = {
        split: Seq2SeqDataset(
            [(_words(n, "en"), _words(n, "fr")) for n in nums], src_tokenizer, tgt_tokenizer
        )
        for split, nums in by_split.items()
    }
    return Task(
        name="num2words-en-fr",
        description=DESCRIPTION,
        splits=splits,
        src_tokenizer=src_tokenizer,
        tgt_tokenizer=tgt_tokenizer,
        metadata={"numbers": by_split, "seed": seed},
    )


def num2words_sizes(
    *, n_train: int = 50_000, n_valid: int = 1000, n_test: int = 1000, seed: int = 0
) -> dict[str, int]:
    """Split sizes, known without generating the task."""
    return {"train": n_train, "valid": n_valid, "test": n_test}
