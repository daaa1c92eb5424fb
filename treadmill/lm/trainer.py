"""LanguageModelTrainer: the `language_model` objective, next-token prediction for decoder-only models.

Batches are TokenFileDataset windows: {"tokens": (B, T), "target": (B, T), "n_chars": (B,)}, target
being tokens shifted by one. Every position is a prediction:

    logits = model(tokens)                                   # (B, T, V)
    loss = cross_entropy(logits over B*T, target over B*T)   # nats per token, weighted by B*T

Metrics (training, `val_` in validation, and `evaluate`): `loss` (nats/token), `perplexity`
(exp of the epoch's mean loss) and `bits_per_char` (the loss of all tokens over the characters they
cover, in bits; equal to loss / ln 2 for a character-level model).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn.functional as F
from torch import nn

from treadmill.checkpoint import unwrap_model
from treadmill.lm.metrics import bits_per_char, perplexity_from_loss
from treadmill.trainer import Trainer
from treadmill.validation import ConfigError

__all__ = ["LanguageModelTrainer", "check_block_size"]

_CHARS_PER_TOKEN = "chars_per_token"  # a per-batch mean the epoch turns into bits_per_char


def check_block_size(model: nn.Module, block_size: int, where: str = "block_size") -> None:
    """Refuse windows longer than the model's context (`config.max_len`), naming both."""
    max_len = getattr(getattr(unwrap_model(model), "config", None), "max_len", None)
    if max_len is not None and block_size > max_len:
        raise ConfigError(
            f"{where}={block_size} is larger than the model's max_len={max_len}: a window would not fit its "
            f"positions. Lower {where} or build the model with max_len >= {block_size}.", field="block_size")


class LanguageModelTrainer(Trainer):
    """A Trainer whose hooks implement next-token loss over every position of token windows."""

    def __init__(self, model: nn.Module, config: Any = None, train_dataloader: Iterable[Any] | None = None,
                 val_dataloader: Iterable[Any] | None = None, **kwargs: Any) -> None:
        for loader in (train_dataloader, val_dataloader):
            block_size = getattr(getattr(loader, "dataset", None), "block_size", None)
            if block_size is not None:
                check_block_size(model, int(block_size))
        super().__init__(model, config, train_dataloader, val_dataloader, **kwargs)

    def _forward_pass(self, batch: Any) -> Any:
        """Logits (B, T, V) for the window's tokens (B, T)."""
        return self.model(batch["tokens"])

    def _compute_loss(self, batch: Any, predictions: Any) -> Any:
        """(mean cross-entropy over every position, number of positions)."""
        target = batch["target"]  # (B, T)
        loss = F.cross_entropy(predictions.reshape(-1, predictions.size(-1)).float(), target.reshape(-1))
        return loss, target.numel()

    def _compute_metrics(self, batch: Any, predictions: Any) -> dict[str, Any]:
        """Characters per target token (the user's metric functions too): bits_per_char is derived
        from it and the epoch's mean loss, so it is exact whatever the batch sizes."""
        metrics = super()._compute_metrics(batch, predictions)
        n_chars = batch.get("n_chars")
        if n_chars is not None:
            metrics[_CHARS_PER_TOKEN] = n_chars.sum() / batch["target"].numel()
        return metrics

    def _derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """perplexity and bits_per_char from the epoch's mean loss."""
        chars_per_token = metrics.pop(_CHARS_PER_TOKEN, None)
        if "loss" in metrics:
            metrics["perplexity"] = perplexity_from_loss(metrics["loss"])
            if chars_per_token:
                metrics["bits_per_char"] = bits_per_char(metrics["loss"], chars_per_token)
        return metrics
