"""num2words-en-fr: English number words -> French number words, both written by `num2words`.

Integers are drawn log-uniformly in [1, 10^9) (n = floor(10^u), u ~ U(0, 9)) and are unique
across all splits (test drawn first, then valid, then train), so no test number is seen in
training. Texts are exactly num2words' strings ("twenty-two" -> "vingt-deux"). Word tokenizers
split hyphens and commas off as tokens of their own, marked with the joiner so that decoding
restores the exact string: "vingt-deux" -> ["vingt", "￭-￭", "deux"] -> "vingt-deux".
The vocabularies are built from 0..999 and k*1000, k*10^6 (k < 1000) plus small offsets, which
contain every token num2words uses below 10^9 (checked on 200k random numbers), so they do not
depend on the sample and no test word is UNK.

num2words-en-es is the same task with Spanish targets ("twenty-two" -> "veintidós"): the same
numbers in the same splits for the same seed and sizes. With `shared_vocab: true` (en-es's
default; en-fr's is false, its vocabulary unchanged) the target vocabulary covers both French and
Spanish, so an en-fr model trained with it can be fine-tuned on en-es (`model.init_from`): the two
tasks then have identical tokenizers, id for id.
"""

from __future__ import annotations

import functools
import random

from torch.utils.data import Dataset

from treadmill.data.datasets import Seq2SeqDataset
from treadmill.data.tasks.base import Task
from treadmill.data.tokenizers import WordTokenizer

DESCRIPTION = "English number words -> French number words (num2words; numbers up to 10^9)."
ES_DESCRIPTION = "English number words -> Spanish number words (num2words; numbers up to 10^9)."
MAX_EXPONENT = 9
TARGET_LANGS = ("fr", "es")


def _words(n: int, lang: str) -> str:
    from num2words import num2words

    return str(num2words(n, lang=lang))


@functools.lru_cache(maxsize=4)
def _tokenizers(target_langs: tuple[str, ...] = ("fr",)) -> tuple[WordTokenizer, WordTokenizer]:
    """(English, target) tokenizers over the closed number vocabulary of `target_langs` together."""
    # Offsets 1 and 100 (and 1000 for millions) bring in the joiners num2words puts between groups
    # ("one thousand, one hundred", "deux mille un").
    coverage = [
        *range(1000),
        *(k * 1000 + j for k in range(1, 1000) for j in (0, 1, 100)),
        *(k * 10**6 + j for k in range(1, 1000) for j in (0, 1, 100, 1000)),
    ]
    en = WordTokenizer(punctuation="-,").fit(_words(n, "en") for n in coverage)
    target = WordTokenizer(punctuation="-,").fit(_words(n, lang) for lang in target_langs for n in coverage)
    return en, target


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


def _check_options(n_train: int, n_valid: int, n_test: int, shared_vocab: bool, name: str) -> None:
    for key, value in {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"task {name!r}: {key} must be an integer >= 0, got {value!r}.")
    if not isinstance(shared_vocab, bool):
        raise ValueError(f"task {name!r}: shared_vocab must be true or false, got {shared_vocab!r}.")


def build_num2words(lang: str, *, n_train: int, n_valid: int, n_test: int, seed: int, shared_vocab: bool) -> Task:
    """English -> `lang` ("fr" or "es") number words; the target vocabulary covers fr and es with
    `shared_vocab`, `lang` alone without."""
    if lang not in TARGET_LANGS:
        raise ValueError(f"num2words tasks translate into {', '.join(TARGET_LANGS)}, not {lang!r}.")
    name = f"num2words-en-{lang}"
    _check_options(n_train, n_valid, n_test, shared_vocab, name)
    numbers = sample_numbers(n_train + n_valid + n_test, seed)
    by_split = {
        "train": numbers[n_test + n_valid :],
        "valid": numbers[n_test : n_test + n_valid],
        "test": numbers[:n_test],
    }
    src_tokenizer, tgt_tokenizer = _tokenizers(TARGET_LANGS if shared_vocab else (lang,))
    splits: dict[str, Dataset] = {
        split: Seq2SeqDataset(
            [(_words(n, "en"), _words(n, lang)) for n in nums], src_tokenizer, tgt_tokenizer
        )
        for split, nums in by_split.items()
    }
    return Task(
        name=name,
        description=DESCRIPTION if lang == "fr" else ES_DESCRIPTION,
        splits=splits,
        src_tokenizer=src_tokenizer,
        tgt_tokenizer=tgt_tokenizer,
        metadata={"numbers": by_split, "seed": seed, "shared_vocab": shared_vocab},
    )


def build_num2words_en_fr(
    *, n_train: int = 50_000, n_valid: int = 1000, n_test: int = 1000, seed: int = 0, shared_vocab: bool = False
) -> Task:
    """Build the task (about 0.25 ms per pair: ~13 s at the default sizes)."""
    return build_num2words("fr", n_train=n_train, n_valid=n_valid, n_test=n_test, seed=seed, shared_vocab=shared_vocab)


def build_num2words_en_es(
    *, n_train: int = 50_000, n_valid: int = 1000, n_test: int = 1000, seed: int = 0, shared_vocab: bool = True
) -> Task:
    """The Spanish task; its default vocabulary is the fr + es one an en-fr model with shared_vocab has."""
    return build_num2words("es", n_train=n_train, n_valid=n_valid, n_test=n_test, seed=seed, shared_vocab=shared_vocab)


def num2words_sizes(
    *, n_train: int = 50_000, n_valid: int = 1000, n_test: int = 1000, seed: int = 0, shared_vocab: bool = False
) -> dict[str, int]:
    """Split sizes, known without generating the task."""
    return {"train": n_train, "valid": n_valid, "test": n_test}


def num2words_es_sizes(
    *, n_train: int = 50_000, n_valid: int = 1000, n_test: int = 1000, seed: int = 0, shared_vocab: bool = True
) -> dict[str, int]:
    """Split sizes of num2words-en-es."""
    return {"train": n_train, "valid": n_valid, "test": n_test}
