"""HFTokenizer: a directory's tokenizer.json (HF `tokenizers`) speaking our ids (treadmill/hf/ids.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.hf._extra import require
from treadmill.hf.ids import IdMap, SpecialIds

__all__ = ["HFTokenizer"]


class HFTokenizer:
    """Our Tokenizer interface over an HF fast tokenizer; ids are ours (PAD 0, UNK 1, BOS 2, EOS 3).

    `encode` adds no special tokens by default (our datasets add BOS/EOS to targets); pass
    `add_special_tokens=True` for the model's own framing (BART: <s> ... </s>, T5: ... </s>).
    """

    kind = "hf"

    def __init__(self, tokenizer: Any, id_map: IdMap) -> None:
        self.tokenizer = tokenizer  # tokenizers.Tokenizer
        self.id_map = id_map

    @classmethod
    def from_file(cls, path: str | Path, id_map: IdMap) -> HFTokenizer:
        """Read tokenizer.json at `path` for a model whose ids `id_map` maps."""
        tokenizers = require("tokenizers", "Reading a Hugging Face tokenizer.json")
        return cls(tokenizers.Tokenizer.from_file(str(path)), id_map)

    @property
    def vocab_size(self) -> int:
        """Number of our ids (the model's vocabulary plus aliased special ids)."""
        return self.id_map.vocab_size

    def fit(self, texts: Iterable[str]) -> HFTokenizer:
        """A pretrained tokenizer is not refitted: returns self."""
        return self

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Our ids of `text`."""
        hf_ids = self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        return [int(self.id_map.from_hf[i]) for i in hf_ids]

    def hf_ids(self, ids: Iterable[int]) -> list[int]:
        """Our ids as the model's ids."""
        return [int(self.id_map.to_hf[int(i)]) for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`: PAD and BOS skipped, stops at the first EOS, other special tokens dropped."""
        kept = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                kept.append(i)
        return str(self.tokenizer.decode(self.hf_ids(kept), skip_special_tokens=True))

    def tokenize(self, text: str) -> list[str]:
        """The token strings `encode` maps to ids."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).tokens)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the HF tokenizer's own JSON, the special ids and the vocabulary size."""
        return {
            "kind": self.kind,
            "tokenizer": json.loads(self.tokenizer.to_str()),
            "special": self.id_map.special.as_dict(),
            "hf_vocab_size": self.id_map.hf_vocab_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HFTokenizer:
        """Rebuild from `to_dict()`."""
        tokenizers = require("tokenizers", "Reading a Hugging Face tokenizer")
        id_map = IdMap(int(data["hf_vocab_size"]), SpecialIds(**data["special"]))
        return cls(tokenizers.Tokenizer.from_str(json.dumps(data["tokenizer"])), id_map)

    def save(self, path: str | Path) -> None:
        """Write `to_dict()` as JSON (load_tokenizer reads it back)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False))

    def save_pretrained(self, directory: str | Path) -> None:
        """Write tokenizer.json into `directory` (the form transformers reads)."""
        self.tokenizer.save(str(Path(directory) / "tokenizer.json"))
