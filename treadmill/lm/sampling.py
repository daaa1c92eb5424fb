"""Sampling long texts from a language model whose context is shorter than the text.

`ContextWindow` wraps a decoder-only model so that decoding continues past its `max_len`: while
the prefix fits, calls go to the model with its KV cache; beyond it, the model sees only the last
`block_size` tokens (nanoGPT's `idx[:, -block_size:]`), recomputed without a cache, because the
positions of a cached prefix would shift. `stream_text` yields the decoded text as it is produced
through `treadmill.decoding.stream`, so every strategy and filter of GenerationConfig applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn

from treadmill.decoding import GenerationConfig
from treadmill.decoding.stream import stream

__all__ = ["ContextWindow", "stream_text"]

_REPLACEMENT = "\ufffd"  # a byte-level token may end inside a UTF-8 character


class ContextWindow(nn.Module):
    """A decoder-only model that decodes prefixes of any length by keeping the last `block_size` tokens."""

    is_encoder_decoder = False

    def __init__(self, model: nn.Module, block_size: int | None = None) -> None:
        super().__init__()
        self.model = model
        context: Any = block_size or getattr(model, "config").max_len  # noqa: B009 - the GPT's config
        self.block_size = int(context)

    def decode(self, tgt_prefix: Tensor, memory: Any = None, src_padding_mask: Tensor | None = None,
               cache: Any = None, tgt_padding_mask: Tensor | None = None) -> tuple[Tensor, Any]:
        """Logits for the prefix (B, T): the model's own while T <= block_size, then over the last block_size."""
        if tgt_prefix.size(1) <= self.block_size:
            return self.model.decode(tgt_prefix, memory, src_padding_mask, cache=cache,  # type: ignore[operator]
                                     tgt_padding_mask=tgt_padding_mask)
        window = tgt_prefix[:, -self.block_size :]  # (B, block_size)
        mask = None if tgt_padding_mask is None else tgt_padding_mask[:, -self.block_size :]
        if mask is not None and not bool(mask.any()):
            mask = None
        logits, _ = self.model.decode(window, None, None, cache=None, tgt_padding_mask=mask)  # type: ignore[operator]
        return logits, None  # no cache: the next step recomputes its own window


class stream_text:  # noqa: N801 - used like a generator function
    """The text after `prompt`, piece by piece as tokens are sampled (the prompt is not repeated);
    `.tokens` counts the tokens produced so far.

    Pieces are the growth of the decoded text, so a character made of several byte tokens appears whole.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, prompt: str, config: GenerationConfig,
                 block_size: int | None = None) -> None:
        self.ids = tokenizer.encode(prompt or "\n")  # an empty prompt starts at a line break, as nanoGPT does
        if not self.ids:
            raise ValueError(f"the prompt {prompt!r} encodes to no tokens.")
        self.model, self.tokenizer, self.config, self.block_size = model, tokenizer, config, block_size
        self.tokens = 0

    def __iter__(self) -> Iterator[str]:
        shown, produced = "", []
        for token in stream(ContextWindow(self.model, self.block_size), prompt=[self.ids], config=self.config):
            produced.append(token)
            self.tokens = len(produced)
            text = self.tokenizer.decode(produced)
            if text.endswith(_REPLACEMENT):
                continue  # wait for the rest of the character
            if len(text) > len(shown):
                yield text[len(shown):]
                shown = text
        text = self.tokenizer.decode(produced)
        if len(text) > len(shown):
            yield text[len(shown):]
