"""The model protocol that decoding relies on (docs/model_protocol.md), and ``map_tensors``.

Models do not inherit from anything: any object with these attributes and methods works with
``treadmill.decoding.generate()``. Batch is dim 0 of every tensor in ``memory`` and ``cache``,
so ``map_tensors(lambda t: t.index_select(0, index), cache)`` reorders beams.

``src_padding_mask`` (batch, src_len) bool is True at padding. None means "derive it from PAD"
(``treadmill.constants.PAD_ID``): ``forward`` and ``encode`` then treat the source's PAD tokens
as padding, and ``decode`` uses the mask ``encode`` used (the library's models keep it in
``memory["padding_mask"]``). A mask that is given always wins over the derived one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Seq2SeqModel", "DecoderOnlyModel", "map_tensors"]


@runtime_checkable
class Seq2SeqModel(Protocol):
    """Encoder-decoder model: teacher-forced forward, encode once, decode with a cache."""

    is_encoder_decoder: bool

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits (batch, tgt_len, tgt_vocab) for teacher forcing; mask None: derived from PAD."""
        ...

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> Any:
        """Memory for the decoder (tensors, batch first); mask None: derived from PAD."""
        ...

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: Any,
        src_padding_mask: Tensor | None = None,
        cache: Any = None,
        return_attention: bool = False,
    ) -> tuple[Any, ...]:
        """(logits (batch, T - k, vocab), cache) or (logits, cache, attention); mask None: encode's."""
        ...


@runtime_checkable
class DecoderOnlyModel(Protocol):
    """Decoder-only language model: forward over tokens, decode with a cache (no memory)."""

    is_encoder_decoder: bool

    def forward(self, tokens: Tensor, tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (batch, T, vocab)."""
        ...

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: Any = None,
        src_padding_mask: Tensor | None = None,
        cache: Any = None,
        return_attention: bool = False,
        tgt_padding_mask: Tensor | None = None,
    ) -> tuple[Any, ...]:
        """(logits (batch, T - k, vocab), cache) or (logits, cache, attention)."""
        ...


def map_tensors(fn: Callable[[Tensor], Any], obj: Any) -> Any:
    """Apply fn to every tensor in nested dicts/lists/tuples (namedtuples too); keep other leaves."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return type(obj)((k, map_tensors(fn, v)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple: rebuild by position
        return type(obj)(*(map_tensors(fn, v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(fn, v) for v in obj)
    return obj
