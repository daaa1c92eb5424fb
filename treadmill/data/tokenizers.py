"""Character, word, BPE and byte-level BPE tokenizers behind one small interface, saved as JSON with a "kind".

Every tokenizer:
    fit(texts) -> self          learn the vocabulary (BPE: train merges) from an iterable of strings
    encode(text) -> list[int]   no BOS/EOS (datasets add them to targets)
    decode(ids) -> str          PAD and BOS are skipped, decoding stops at the first EOS,
                                UNK is written as "<unk>" so an unknown input stays visible
    tokenize(text) -> list[str] the token strings encode() maps to ids (for token-level metrics)
    vocab_size                  number of ids, specials included
    save(path) / load_tokenizer(path)

Round trip: decode(encode(x)) == x for text whose symbols are all in the vocabulary (word
tokenizer: words separated by single spaces, no leading/trailing space; BPE: no leading space).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS
from treadmill.data.text_files import read_json_file
from treadmill.data.vocab import Vocab
from treadmill.validation import DataError

# Marks the side on which a split-off punctuation token was glued to its neighbour (the
# OpenNMT "joiner" convention), so that "vingt-deux" -> ["vingt", "￭-￭", "deux"] decodes back.
JOINER = "\uffed"


@runtime_checkable
class Tokenizer(Protocol):
    """What datasets, trainers and the command line need from a tokenizer."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    def fit(self, texts: Iterable[str]) -> Tokenizer: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def tokenize(self, text: str) -> list[str]: ...

    def save(self, path: str | Path) -> None: ...


def content_ids(ids: Iterable[int]) -> list[int]:
    """Ids up to the first EOS, without PAD and BOS (what `decode` renders)."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return out


def token_names(tokenizer: Tokenizer, ids: Iterable[int]) -> list[str]:
    """Each id as a person reads it in a picture or table: special tokens by name (`<eos>`),
    others by their own text, a blank one as '␣' and an id the tokenizer renders empty as `<id N>`."""
    names = []
    for i in ids:
        i = int(i)
        if 0 <= i < len(SPECIAL_TOKENS):
            names.append(SPECIAL_TOKENS[i])
            continue
        text = tokenizer.decode([i])
        names.append(text if text.strip() else "␣" * len(text) if text else f"<id {i}>")
    return names


class CharTokenizer:
    """One token per character (spaces included)."""

    kind = "char"

    def __init__(self, vocab: Vocab | None = None) -> None:
        self.vocab = vocab if vocab is not None else Vocab()

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(self.vocab)

    def fit(
        self, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None
    ) -> CharTokenizer:
        """Build the vocabulary from the characters of `texts`."""
        self.vocab = Vocab.build((list(t) for t in texts), min_freq=min_freq, max_size=max_size)
        return self

    def tokenize(self, text: str) -> list[str]:
        """The characters of `text`."""
        return list(text)

    def encode(self, text: str) -> list[int]:
        """Character ids (unknown characters -> UNK), no BOS/EOS."""
        return self.vocab.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Concatenate the characters up to the first EOS, skipping PAD/BOS."""
        return "".join(self.vocab.decode(content_ids(ids)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with its "kind"."""
        return {"kind": self.kind, "vocab": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        """Inverse of `to_dict`."""
        return cls(Vocab.from_dict(data["vocab"]))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (reload with `load_tokenizer`)."""
        _write_json(path, self.to_dict())


class WordTokenizer:
    """Whitespace-separated tokens; optionally splits punctuation characters off words.

    `punctuation` lists characters that become tokens of their own even inside a word. The side(s)
    on which such a token touched its neighbours are marked with JOINER so decoding restores the
    exact spacing: "twenty-one, two" -> ["twenty", "￭-￭", "one", "￭,", "two"].
    """

    kind = "word"

    def __init__(self, vocab: Vocab | None = None, punctuation: str = "") -> None:
        self.vocab = vocab if vocab is not None else Vocab()
        self.punctuation = punctuation
        if JOINER in punctuation or any(c.isspace() for c in punctuation):
            raise ValueError(
                f"WordTokenizer: punctuation={punctuation!r} may not contain whitespace or the "
                f"joiner {JOINER!r}; list only the punctuation characters to split off."
            )
        self._split = re.compile(f"([{re.escape(punctuation)}])") if punctuation else None

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(self.vocab)

    def fit(
        self, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None
    ) -> WordTokenizer:
        """Build the vocabulary from the tokens of `texts`."""
        self.vocab = Vocab.build(
            (self.tokenize(t) for t in texts), min_freq=min_freq, max_size=max_size
        )
        return self

    def tokenize(self, text: str) -> list[str]:
        """Split on whitespace, then split off the punctuation characters (with joiner marks)."""
        words = text.split()
        if self._split is None:
            return words
        tokens: list[str] = []
        for word in words:
            pieces = [p for p in self._split.split(word) if p]
            for k, piece in enumerate(pieces):
                if len(piece) == 1 and piece in self.punctuation:
                    left = JOINER if k > 0 else ""
                    right = JOINER if k < len(pieces) - 1 else ""
                    piece = f"{left}{piece}{right}"
                tokens.append(piece)
        return tokens

    def encode(self, text: str) -> list[int]:
        """Token ids (unknown tokens -> UNK), no BOS/EOS."""
        return self.vocab.encode(self.tokenize(text))

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Join tokens with spaces and glue joiner-marked punctuation back to its neighbours."""
        text = " ".join(tokens)
        if self._split is None:
            return text
        text = text.replace(f"{JOINER} ", "").replace(f" {JOINER}", "")
        return text.replace(JOINER, "")

    def decode(self, ids: Iterable[int]) -> str:
        """Detokenized text up to the first EOS, skipping PAD/BOS."""
        return self.detokenize(self.vocab.decode(content_ids(ids)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with its "kind"."""
        return {"kind": self.kind, "punctuation": self.punctuation, "vocab": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordTokenizer:
        """Inverse of `to_dict`."""
        return cls(Vocab.from_dict(data["vocab"]), punctuation=data.get("punctuation", ""))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (reload with `load_tokenizer`)."""
        _write_json(path, self.to_dict())


class BPETokenizer:
    """Byte-pair encoding trained with HF `tokenizers` (Metaspace pre-tokenizer, specials 0..3)."""

    kind = "bpe"

    def __init__(self, vocab_size: int = 1000, min_frequency: int = 2) -> None:
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"BPETokenizer: vocab_size={vocab_size} leaves no room after the "
                f"{len(SPECIAL_TOKENS)} special tokens; use a few hundred or more."
            )
        self.target_vocab_size = vocab_size
        self.min_frequency = min_frequency
        self._tok: Any = None

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included (may be below the requested size on small corpora)."""
        self._check_fitted()
        return int(self._tok.get_vocab_size())

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 1000, min_frequency: int = 2
    ) -> BPETokenizer:
        """Construct and fit in one call."""
        return cls(vocab_size, min_frequency).fit(texts)

    def fit(self, texts: Iterable[str]) -> BPETokenizer:
        """Train BPE merges on `texts`; the special tokens get ids 0..3."""
        from tokenizers import trainers

        tok, trainer_options = self._untrained()
        trainer = trainers.BpeTrainer(
            vocab_size=self.target_vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
            **trainer_options,
        )
        tok.train_from_iterator(texts, trainer)
        for i, special in enumerate(SPECIAL_TOKENS):
            if tok.token_to_id(special) != i:  # a real check: `assert` vanishes under python -O
                raise RuntimeError(f"{type(self).__name__}: the trainer gave {special!r} id {tok.token_to_id(special)}, not {i}.")
        self._tok = tok
        return self

    def _untrained(self) -> tuple[Any, dict[str, Any]]:
        """An empty HF tokenizer with this kind's pre-tokenizer and decoder, and its trainer options."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        tok = HFTokenizer(models.BPE(unk_token=SPECIAL_TOKENS[1]))
        # Metaspace keeps word boundaries as "▁" inside tokens, so decoding restores the spaces.
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        return tok, {}

    def _check_fitted(self) -> None:
        if self._tok is None:
            raise RuntimeError(
                f"{type(self).__name__} is not trained: call fit(texts) or {type(self).__name__}.train()."
            )

    def tokenize(self, text: str) -> list[str]:
        """BPE pieces of `text` ("▁" marks a word start)."""
        self._check_fitted()
        return list(self._tok.encode(text, add_special_tokens=False).tokens)

    def encode(self, text: str) -> list[int]:
        """BPE ids, no BOS/EOS."""
        self._check_fitted()
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to the first EOS, skipping PAD/BOS."""
        self._check_fitted()
        return str(self._tok.decode(content_ids(ids), skip_special_tokens=False))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with its "kind" and the HF tokenizer's own JSON."""
        self._check_fitted()
        return {
            "kind": self.kind,
            "vocab_size": self.target_vocab_size,
            "min_frequency": self.min_frequency,
            "hf_tokenizer": self._tok.to_str(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        """Inverse of `to_dict`."""
        from tokenizers import Tokenizer as HFTokenizer

        tok = cls(data["vocab_size"], data["min_frequency"])
        tok._tok = HFTokenizer.from_str(data["hf_tokenizer"])
        return tok

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (reload with `load_tokenizer`)."""
        _write_json(path, self.to_dict())


class ByteLevelBPETokenizer(BPETokenizer):
    """GPT-2-style byte-level BPE for running text: every string encodes (no UNK), newlines and
    indentation included, and decode(encode(x)) == x; BPETokenizer's Metaspace suits single lines."""

    kind = "byte_bpe"

    def __init__(self, vocab_size: int = 1000, min_frequency: int = 2) -> None:
        if vocab_size <= len(SPECIAL_TOKENS) + 256:
            raise ValueError(f"ByteLevelBPETokenizer: vocab_size={vocab_size} leaves no room for merges after the "
                             f"{len(SPECIAL_TOKENS)} specials and 256 bytes; use 512 or more.")
        super().__init__(vocab_size, min_frequency)

    def _untrained(self) -> tuple[Any, dict[str, Any]]:
        """An empty byte-level HF tokenizer; all 256 bytes start in the alphabet."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok, {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()}


_KINDS: dict[str, Any] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
    "bpe": BPETokenizer,
    "byte_bpe": ByteLevelBPETokenizer,  # running text with newlines (language modelling)
}


def _write_json(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, ensure_ascii=False))


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild any tokenizer from its `to_dict()` form."""
    kind = data.get("kind")
    if kind == "hf":  # a pretrained model's tokenizer (treadmill.hf, the optional `hf` extra)
        from treadmill.hf.tokenizer import HFTokenizer

        return HFTokenizer.from_dict(data)
    if kind not in _KINDS:
        raise ValueError(f"tokenizer kind {kind!r} is unknown; expected one of {sorted(_KINDS)}.")
    return _KINDS[kind].from_dict(data)  # type: ignore[no-any-return]


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Reload a tokenizer of any kind from the JSON file its `save` wrote."""
    try:
        data = read_json_file(path, "tokenizer file")
    except FileNotFoundError as err:
        raise DataError(str(err)) from None
    if not isinstance(data, dict) or "kind" not in data:
        raise DataError(
            f"tokenizer file {path} has no 'kind' field; it was not written by a Treadmill "
            "tokenizer's save()."
        )
    try:
        return tokenizer_from_dict(data)
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise DataError(f"tokenizer file {path}: {err}") from err
