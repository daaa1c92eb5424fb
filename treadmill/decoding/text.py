"""Turn output token ids back into text with a tokenizer (`decode(ids)`) or a vocabulary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.decoding.output import GenerationOutput


@runtime_checkable
class Decoder(Protocol):
    """Anything with `decode(ids)` returning a str (tokenizers) or a token list (data.Vocab)."""

    def decode(self, ids: list[int]) -> str | list[str]: ...


Vocabulary = Decoder | Mapping[int, str] | Mapping[str, int] | Sequence[str]


def ids_to_tokens(
    ids: Iterable[int],
    vocab: Mapping[int, str] | Mapping[str, int] | Sequence[str],
    *,
    skip_special: bool = True,
    special_ids: Iterable[int] = (PAD_ID, BOS_ID, EOS_ID),
) -> list[str]:
    """Map ids to token strings with an id->token mapping, a token list, or a token->id dict."""
    table = _id_to_token(vocab)
    skip = set(special_ids) if skip_special else set()
    tokens = []
    for i in ids:
        i = int(i)
        if i in skip:
            continue
        if i not in table:
            raise ValueError(
                f"token id {i} is not in the vocabulary ({len(table)} entries); decode with the "
                "target vocabulary the model was trained with"
            )
        tokens.append(table[i])
    return tokens


def decode_to_text(
    ids: Any,
    vocab: Vocabulary,
    *,
    sep: str = " ",
    skip_special: bool = True,
    special_ids: Iterable[int] = (PAD_ID, BOS_ID, EOS_ID),
) -> Any:
    """Ids -> text: one id list gives a str; lists of lists (or a GenerationOutput) give lists.

    `vocab` is a tokenizer with `decode(ids)` (used as is, after dropping PAD/BOS/EOS when
    `skip_special`; a token list it returns, as `treadmill.data.Vocab` does, is joined with
    `sep`), an id->token mapping, a list of tokens indexed by id, or a token->id dict
    (seed 001's vocabularies), whose tokens are joined with `sep`.
    """
    if isinstance(ids, GenerationOutput):
        ids = ids.sequences
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    if isinstance(ids, (list, tuple)) and ids and not isinstance(ids[0], int):
        return [
            decode_to_text(x, vocab, sep=sep, skip_special=skip_special, special_ids=special_ids)
            for x in ids
        ]
    skip = set(special_ids) if skip_special else set()
    if isinstance(vocab, Decoder) and not isinstance(vocab, (Mapping, Sequence)):
        text = vocab.decode([int(i) for i in ids if int(i) not in skip])
        return text if isinstance(text, str) else sep.join(text)  # Vocab.decode gives tokens
    tokens = ids_to_tokens(ids, vocab, skip_special=skip_special, special_ids=special_ids)
    return sep.join(tokens)


def _id_to_token(vocab: Any) -> Mapping[int, str]:
    if isinstance(vocab, Mapping):
        items = list(vocab.items())
        if items and isinstance(items[0][0], str) and isinstance(items[0][1], int):
            return {int(i): tok for tok, i in items}  # token -> id: invert it
        return {int(i): str(tok) for i, tok in items}
    if isinstance(vocab, Sequence) and not isinstance(vocab, str):
        return dict(enumerate(vocab))
    raise ValueError(
        f"vocab must be a tokenizer with decode(ids), an id->token mapping or a token list; "
        f"got {type(vocab).__name__}"
    )
