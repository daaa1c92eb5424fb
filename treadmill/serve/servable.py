"""Servable: what a demo page needs from a trained run, and the checks on text typed into it.

The application layer (``treadmill serve``) fills it from a run directory the way ``generate``
loads one (same tokenizers, same weights or export); the pages only see this object.

    kind       page
    seq2seq    text -> n-best hypotheses with scores, decoding controls, attention heatmap
    lm         prompt -> text streamed token by token, sampling controls, a stop button
    forecast   a test window -> plot of the history, the forecast and what happened
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from treadmill.constants import UNK_ID

__all__ = ["Servable", "PAGE_KINDS", "input_problem"]

PAGE_KINDS = ("seq2seq", "lm", "forecast")


@dataclass
class Servable:
    """A loaded model with its tokenizers and decoding defaults, as the demo pages use it.

    `encode` lays a text out as the run's training sources were (BOS / EOS or not);
    `max_input_tokens` bounds what the page accepts; `token_delay` (seconds) paces the LM page's
    stream for demonstrations (0: as fast as the model goes).
    """

    model: nn.Module
    kind: str
    title: str
    src_tokenizer: Any = None
    tgt_tokenizer: Any = None
    encode: Callable[[str], list[int]] | None = None
    generation: dict[str, Any] = field(default_factory=dict)
    max_input_tokens: int = 256
    examples: list[str] = field(default_factory=list)
    forecast_windows: Any = None  # forecast: the test split's windows (ForecastDataset)
    forecast_scale: tuple[float, float] = (0.0, 1.0)  # (mean, std): raw = value * std + mean
    token_delay: float = 0.0
    attention: bool = True  # whether the model can return attention weights (not onnxruntime)

    def __post_init__(self) -> None:
        if self.kind not in PAGE_KINDS:
            raise ValueError(f"Servable kind {self.kind!r} is not one of {PAGE_KINDS}.")
        if self.kind != "forecast" and (self.encode is None or self.tgt_tokenizer is None):
            raise ValueError(f"A {self.kind} Servable needs `encode` and `tgt_tokenizer`.")


def input_problem(servable: Servable, text: str) -> str | None:
    """Why `text` cannot be decoded (empty, too long, symbols the model never saw), or None."""
    if not text.strip():
        return "Type some text first: the input is empty."
    tokenizer = servable.src_tokenizer
    symbols = tokenizer.tokenize(text) if tokenizer is not None else list(text)
    if len(symbols) > servable.max_input_tokens:
        return (f"The input is {len(symbols)} tokens long; this model takes at most {servable.max_input_tokens}. "
                "Shorten it.")
    if tokenizer is not None:
        unknown = sorted({s for s, i in zip(symbols, tokenizer.encode(text), strict=False) if i == UNK_ID})
        if unknown:
            shown = ", ".join(repr(s) for s in unknown[:10])
            return (f"The input has {len(unknown)} symbol(s) outside the model's vocabulary: {shown}. "
                    "Use only symbols the model was trained on.")
    return None
