"""`treadmill generate ... --attention PNG [--layer L] [--head H|mean|all]`: what the model looked at.

The first input's best output is fed back teacher-forced (`seq2seq.attention_maps`), which gives
every layer's and head's attention as the decoder had it: cross-attention over the source for an
encoder-decoder, self-attention over the whole sequence for a decoder-only model. Every row and
column is labelled with its token, special tokens by name (`<bos>`, `<eos>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treadmill.cli.config import RunConfigError

__all__ = ["AttentionPicture"]


@dataclass
class AttentionPicture:
    """Where the picture goes and which attention it shows: `layer` from 1 (None: the last),
    `head` a number from 1, "mean" (the heads' average) or "all" (a grid of every head)."""

    png: Path
    layer: int | None = None
    head: str = "all"

    def _choose(self, n_layers: int, n_heads: int) -> tuple[int, int | str]:
        """(layer index from 0, head index from 0 or "mean"/"all"), checked against the model."""
        layer = n_layers if self.layer is None else self.layer
        if not 1 <= layer <= n_layers:
            raise RunConfigError(f"--layer {self.layer}: the model's decoder has {n_layers} attention layer(s); "
                                 f"choose 1 to {n_layers}.")
        if self.head in ("mean", "all"):
            return layer - 1, self.head
        if not self.head.isdigit() or not 1 <= int(self.head) <= n_heads:
            raise RunConfigError(f"--head {self.head}: choose a head from 1 to {n_heads}, 'mean' or 'all'.")
        return layer - 1, int(self.head) - 1

    def figure(self, loaded: Any, source: list[int], output: list[int], text: str) -> Any:
        """The picture of `output` (ids) decoded from `source` (ids, from input `text`), as a Figure."""
        from treadmill.data.tokenizers import token_names
        from treadmill.plots import attention_figure, attention_grid_figure
        from treadmill.seq2seq.attention_maps import attention_maps

        try:
            maps = attention_maps(loaded.model, source, output)
        except ValueError as err:  # a model that returns no attention weights
            raise RunConfigError(f"--attention: {err}") from err
        layer, head = self._choose(maps.n_layers, maps.n_heads)
        tokenizers = {"src": loaded.src_tokenizer, "tgt": loaded.tgt_tokenizer}
        rows = [token_names(tokenizers[side], [i])[0] for i, side in zip(maps.row_ids, maps.row_sides, strict=True)]
        cols = [token_names(tokenizers[side], [i])[0] for i, side in zip(maps.col_ids, maps.col_sides, strict=True)]
        cross = maps.kind == "cross"
        labels = ("source", "output") if cross else ("attended position", "query position")
        title = (f"{text!r} -> {loaded.tgt_tokenizer.decode(output)!r}\n"
                 f"{'cross' if cross else 'self'}-attention, layer {layer + 1}/{maps.n_layers}")
        weights = maps.weights[layer]  # (heads, rows, cols)
        if head == "all" and maps.n_heads > 1:
            return attention_grid_figure(weights, cols, rows, f"{title}, all {maps.n_heads} heads", *labels)
        if head == "mean":
            return attention_figure(weights.mean(0), cols, rows, f"{title}, mean of {maps.n_heads} heads", *labels)
        index = head if isinstance(head, int) else 0  # "all" of a single head: that head
        return attention_figure(weights[index], cols, rows, f"{title}, head {index + 1}/{maps.n_heads}", *labels)

    def write(self, loaded: Any, source: list[int], output: list[int], text: str) -> Path:
        """Write the picture (see `figure`) to the PNG; returns its path."""
        self.png.parent.mkdir(parents=True, exist_ok=True)
        self.figure(loaded, source, output, text).savefig(self.png, dpi=100, format="png")
        return self.png
