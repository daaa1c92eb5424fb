"""A confusion matrix as a heatmap: true class down, predicted class across, counts in the cells,
colour by the share of the true class (row-normalised, so small classes are as readable as big ones)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["confusion_figure", "plot_confusion"]


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str = "") -> Figure:
    """The heatmap Figure of a (K, K) count matrix [true, predicted]."""
    counts = np.asarray(matrix, dtype=float)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion_figure: a {counts.shape} matrix for {len(labels)} labels.")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.75 * len(labels)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write the heatmap as a PNG; returns the path."""
    path = Path(path)
    confusion_figure(matrix, labels, title).savefig(path, dpi=110)
    return path
