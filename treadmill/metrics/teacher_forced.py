"""Metrics over padded batches of teacher-forced predictions: token/sequence accuracy, perplexity.

They return (correct, total) count tensors instead of ratios so that a trainer can sum them over
batches (and across processes) and divide once: the epoch value is then a token- or
sentence-weighted mean, never a mean of batch means. Nothing here calls `.item()`, so no
device-host synchronisation happens inside the training step.
"""

from __future__ import annotations

import math

from torch import Tensor

from treadmill.constants import PAD_ID

__all__ = ["token_accuracy", "sequence_accuracy", "perplexity"]


def _predictions(logits_or_pred: Tensor, target: Tensor) -> Tensor:
    """Return token ids (batch, tgt_len) from logits (batch, tgt_len, vocab) or from ids."""
    if logits_or_pred.dim() == target.dim() + 1:
        pred = logits_or_pred.argmax(dim=-1)  # (batch, tgt_len)
    else:
        pred = logits_or_pred
    if pred.shape != target.shape:
        raise ValueError(
            f"logits_or_pred has shape {tuple(logits_or_pred.shape)} but target has shape "
            f"{tuple(target.shape)}: pass logits (batch, tgt_len, vocab) or predicted ids "
            "(batch, tgt_len) aligned with target (shift tgt by one: target = tgt[:, 1:])."
        )
    return pred


def token_accuracy(
    logits_or_pred: Tensor, target: Tensor, pad_id: int = PAD_ID
) -> tuple[Tensor, Tensor]:
    """Count correct non-pad tokens: returns (correct, total) as 0-dim long tensors."""
    pred = _predictions(logits_or_pred, target)
    not_pad = target != pad_id  # (batch, tgt_len)
    correct = ((pred == target) & not_pad).sum()
    return correct, not_pad.sum()


def sequence_accuracy(
    logits_or_pred: Tensor, target: Tensor, pad_id: int = PAD_ID
) -> tuple[Tensor, Tensor]:
    """Count rows whose every non-pad token is correct: returns (correct, total) long tensors.

    Rows that are entirely padding are not sequences and count in neither number.
    """
    pred = _predictions(logits_or_pred, target)
    not_pad = target != pad_id  # (batch, tgt_len)
    # A pad position can never make a row wrong, whatever was predicted there.
    row_ok = ((pred == target) | ~not_pad).all(dim=-1)  # (batch,)
    is_row = not_pad.any(dim=-1)  # (batch,)
    return (row_ok & is_row).sum(), is_row.sum()


def perplexity(nll_sum: float | Tensor, n_tokens: int | Tensor) -> float:
    """Return exp(nll_sum / n_tokens), the perplexity of a summed natural-log NLL."""
    nll = float(nll_sum)
    count = int(n_tokens)
    if count <= 0:
        raise ValueError(
            f"perplexity needs n_tokens > 0, got {count}: accumulate at least one non-pad token."
        )
    mean_nll = nll / count
    # math.exp overflows past ~709; an untrained model can get there, and inf is the honest answer.
    return math.exp(mean_nll) if mean_nll < 709.0 else math.inf
