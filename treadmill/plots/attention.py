"""Attention heatmaps with a token name on every row and column.

    plot_attention(weights, src_tokens, tgt_tokens)        one map (tgt_len, src_len)
    plot_attention_heads(weights, cols, rows, layer=...)   every head of one layer, side by side

Every token gets its tick label (matplotlib would otherwise thin them out on long inputs), and
the title says which attention it is: kind, layer and head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["attention_figure", "attention_grid_figure", "plot_attention", "plot_attention_heads"]


def _matrix(weights: Any) -> np.ndarray:
    return np.asarray(weights.detach().float().cpu() if hasattr(weights, "detach") else weights, dtype=float)


def _check(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], where: str) -> None:
    if matrix.shape[-2:] != (len(rows), len(cols)):
        lead = "heads, " if matrix.ndim == 3 else ""
        raise ValueError(
            f"{where}: weights have shape {tuple(matrix.shape)} but there are {len(rows)} row and "
            f"{len(cols)} column tokens; pass weights of shape ({lead}rows, cols) = ({lead}{len(rows)}, {len(cols)})."
        )


def _heatmap(ax: Any, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], vmax: float | None = None) -> Any:
    top = float(matrix.max(initial=0.0)) if vmax is None else vmax
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(top, 1e-9), aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=90)
    ax.set_yticks(range(len(rows)), labels=list(rows))
    return image


def attention_figure(weights: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str], title: str | None = None,
                     xlabel: str = "source", ylabel: str = "output") -> Figure:
    """One heatmap of weights (rows, cols): `tgt_tokens` down, `src_tokens` across."""
    matrix = _matrix(weights)
    if matrix.ndim != 2:
        raise ValueError(f"plot_attention: weights must be 2-D (rows, cols), got shape {tuple(matrix.shape)}.")
    _check(matrix, tgt_tokens, src_tokens, "plot_attention")
    fig = Figure(figsize=(max(4.0, 0.4 * len(src_tokens) + 2.5), max(3.0, 0.4 * len(tgt_tokens) + 1.8)),
                 layout="constrained")
    ax = fig.subplots()
    image = _heatmap(ax, matrix, tgt_tokens, src_tokens)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="attention weight")
    return fig


def attention_grid_figure(weights: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str], title: str,
                          xlabel: str = "source", ylabel: str = "output", max_cols: int = 4) -> Figure:
    """Every head of a layer, weights (heads, rows, cols), one titled heatmap each ("head 1", ...)."""
    matrix = _matrix(weights)
    if matrix.ndim != 3:
        raise ValueError(f"plot_attention_heads: weights must be (heads, rows, cols), got shape {tuple(matrix.shape)}.")
    _check(matrix, tgt_tokens, src_tokens, "plot_attention_heads")
    heads = matrix.shape[0]
    cols = min(heads, max_cols)
    rows = math.ceil(heads / cols)
    panel_w, panel_h = max(3.0, 0.3 * len(src_tokens) + 1.5), max(2.5, 0.3 * len(tgt_tokens) + 1.3)
    fig = Figure(figsize=(panel_w * cols + 0.8, panel_h * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for head, ax in enumerate(axes[:heads]):
        # one colour scale for every head, so their maps compare
        image = _heatmap(ax, matrix[head], tgt_tokens, src_tokens, vmax=float(matrix.max(initial=0.0)))
        ax.set_title(f"head {head + 1}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in axes[heads:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.colorbar(image, ax=list(axes[:heads]), label="attention weight", shrink=0.8)
    return fig


def _save(fig: Figure, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def plot_attention(weights: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                   out: str | Path = "attention.png", title: str | None = None,
                   xlabel: str = "source", ylabel: str = "output") -> Path:
    """Write one heatmap of weights (tgt_len, src_len) as a PNG; returns its path."""
    return _save(attention_figure(weights, src_tokens, tgt_tokens, title, xlabel, ylabel), out)


def plot_attention_heads(weights: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                         out: str | Path = "attention.png", title: str = "attention, all heads",
                         xlabel: str = "source", ylabel: str = "output") -> Path:
    """Write a grid of every head's heatmap, weights (heads, tgt_len, src_len), as a PNG."""
    return _save(attention_grid_figure(weights, src_tokens, tgt_tokens, title, xlabel, ylabel), out)
