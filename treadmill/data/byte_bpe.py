"""ByteLevelBPETokenizer: GPT-2-style byte-level BPE (HF `tokenizers`), for running text.

Unlike BPETokenizer (Metaspace, built for single-line seq2seq text), byte-level BPE encodes every
string, newlines and indentation included, and decodes it back exactly: what a language model on
plays (speaker lines, verse breaks) needs. Specials PAD, UNK, BOS, EOS keep ids 0..3.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS

__all__ = ["ByteLevelBPETokenizer"]


class ByteLevelBPETokenizer:
    """Byte-level BPE: every text encodes (no UNK), decode(encode(x)) == x."""

    kind = "byte_bpe"

    def __init__(self, vocab_size: int = 1000, min_frequency: int = 2) -> None:
        if vocab_size <= len(SPECIAL_TOKENS) + 256:
            raise ValueError(f"ByteLevelBPETokenizer: vocab_size={vocab_size} leaves no room for merges after the "
                             f"{len(SPECIAL_TOKENS)} specials and 256 bytes; use 512 or more.")
        self.target_vocab_size, self.min_frequency = vocab_size, min_frequency
        self._tok: Any = None

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        self._check_fitted()
        return int(self._tok.get_vocab_size())

    def fit(self, texts: Iterable[str]) -> ByteLevelBPETokenizer:
        """Train merges on `texts`; the special tokens get ids 0..3."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=self.target_vocab_size, min_frequency=self.min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        for i, special in enumerate(SPECIAL_TOKENS):
            if tok.token_to_id(special) != i:
                raise RuntimeError(f"ByteLevelBPETokenizer: the trainer gave {special!r} id {tok.token_to_id(special)}, not {i}.")
        self._tok = tok
        return self

    def _check_fitted(self) -> None:
        if self._tok is None:
            raise RuntimeError("ByteLevelBPETokenizer is not trained: call fit(texts).")

    def tokenize(self, text: str) -> list[str]:
        """The byte-level pieces of `text`."""
        self._check_fitted()
        return list(self._tok.encode(text, add_special_tokens=False).tokens)

    def encode(self, text: str) -> list[int]:
        """Ids, no BOS/EOS."""
        self._check_fitted()
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to the first EOS, skipping PAD/BOS."""
        self._check_fitted()
        kept = []
        for i in ids:
            if int(i) == EOS_ID:
                break
            if int(i) not in (PAD_ID, BOS_ID):
                kept.append(int(i))
        return str(self._tok.decode(kept, skip_special_tokens=False))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with its "kind" and the HF tokenizer's own JSON."""
        self._check_fitted()
        return {"kind": self.kind, "vocab_size": self.target_vocab_size, "min_frequency": self.min_frequency,
                "hf_tokenizer": self._tok.to_str()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ByteLevelBPETokenizer:
        """Inverse of `to_dict`."""
        from tokenizers import Tokenizer as HFTokenizer

        tok = cls(data["vocab_size"], data["min_frequency"])
        tok._tok = HFTokenizer.from_str(data["hf_tokenizer"])
        return tok

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (reload with `load_tokenizer`)."""
        import json

        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False))
