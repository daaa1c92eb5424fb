"""Token embeddings in two dimensions, each point labelled with its token: PCA (torch) or t-SNE
(scikit-learn, optional: `pip install 'treadmill[embeddings]'`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["METHODS", "project_2d", "embeddings_figure", "plot_embeddings", "embedding_weights"]

METHODS = ("pca", "tsne")


def project_2d(weights: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(V, D) embedding rows -> (V, 2): the top two principal components, or a t-SNE map."""
    if method not in METHODS:
        raise ValueError(f"embedding projection {method!r} is unknown; use one of {', '.join(METHODS)}.")
    matrix = weights.detach().float().cpu()
    if method == "pca":
        centred = matrix - matrix.mean(dim=0, keepdim=True)
        _, _, components = torch.linalg.svd(centred, full_matrices=False)  # rows: directions of most variance
        return (centred @ components[:2].T).numpy()  # (V, 2)
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise ImportError("t-SNE needs scikit-learn: pip install 'treadmill[embeddings]' (or use pca).") from err
    perplexity = float(min(30, max(2, (len(matrix) - 1) // 3)))  # t-SNE needs perplexity < rows
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(matrix.numpy())


def embeddings_figure(points: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """A scatter of the points with each token's name beside it."""
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels.")
    fig = Figure(figsize=(9, 9))
    ax = fig.add_subplot()
    ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.5)
    for (x, y), label in zip(points, labels, strict=True):
        ax.annotate(label, (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_embeddings(weights: torch.Tensor, labels: Sequence[str], out: str | Path, method: str = "pca",
                    title: str | None = None, max_tokens: int | None = 500) -> Path:
    """Write the PNG of the first `max_tokens` embedding rows (the most frequent, for BPE) projected by `method`."""
    rows = weights[:max_tokens] if max_tokens else weights
    points = project_2d(rows, method)
    fig = embeddings_figure(points, list(labels)[: len(rows)], title or f"token embeddings ({method}, {len(rows)} tokens)")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def embedding_weights(model: Any) -> torch.Tensor:
    """The model's token embedding table (V, D): a GPT's `token_embedding`, else the target side's, else the first."""
    from torch import nn

    for name in ("token_embedding", "tgt_embedding", "decoder.embedding"):
        module = model
        for part in name.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.Embedding):
            return module.weight
    first = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if first is None:
        raise ValueError(f"{type(model).__name__} has no nn.Embedding to plot.")
    return first.weight
