"""Vocabulary: a fixed list of token strings with the special tokens at ids 0..3."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from treadmill.constants import SPECIAL_TOKENS, UNK_ID


class Vocab:
    """Token <-> id mapping; ids 0..3 are `<pad> <unk> <bos> <eos>` (treadmill.constants)."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self.itos: list[str] = list(SPECIAL_TOKENS)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        for tok in tokens:
            if tok in self.stoi:
                # Duplicates and special tokens in the input keep their first id.
                continue
            self.stoi[tok] = len(self.itos)
            self.itos.append(tok)

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocab:
        """Count tokens and keep the frequent ones, most frequent first (ties: sorted by string)."""
        if min_freq < 1:
            raise ValueError(f"Vocab.build: min_freq must be >= 1, got {min_freq}.")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        # Sorting by (-count, token) makes the ids independent of the input order.
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIAL_TOKENS))]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, tokens={self.itos[4:12]}...)"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids; unknown tokens become UNK_ID."""
        stoi = self.stoi
        return [stoi.get(tok, UNK_ID) for tok in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids to token strings (special tokens included, as their strings)."""
        n = len(self.itos)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"Vocab.decode: id {i} is outside the vocabulary [0, {n}).")
            out.append(self.itos[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the tokens after the specials, in id order."""
        return {"tokens": self.itos[len(SPECIAL_TOKENS) :]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        """Inverse of `to_dict`."""
        return cls(data["tokens"])

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a vocabulary written by `save`."""
        from treadmill.data.text_files import read_json_file

        return cls.from_dict(read_json_file(path, "vocabulary file"))
