"""Whether a metric is minimised or maximised, from its name (a leaf module: configs, callbacks,
histories and trackers all ask)."""

from __future__ import annotations

import re

__all__ = ["infer_mode"]

# Words of metric names where smaller is better; anything else (accuracy, BLEU, ...) is maximised.
_MINIMISED = frozenset(
    ("loss", "error", "wer", "per", "cer", "perplexity", "ppl", "nll", "mse", "rmse", "mae", "mase", "mape", "gap")
)


def infer_mode(monitor: str) -> str:
    """'min' for losses and error rates, 'max' for everything else (accuracies, BLEU, ...)."""
    # Whole words, so val_perfect_match is not taken for PER; a last word ending in loss/error
    # covers camelCase names such as valLoss.
    words = re.findall(r"[a-z]+", monitor.lower())
    if any(word in _MINIMISED for word in words) or (words and words[-1].endswith(("loss", "error"))):
        return "min"
    return "max"
