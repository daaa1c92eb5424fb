"""A sequence classifier: a Treadmill body (GPT, or a Transformer's encoder) + pooling + a linear head.

    src (B, S) -> body hidden states (B, S, D) -> pool over real tokens -> dropout -> Linear -> (B, K)

Pooling (`pooling`):

* ``last``: the hidden state of each row's last non-pad token (for a causal GPT the only one that
  has read the whole input);
* ``mean``: the mean over non-pad tokens;
* ``attention``: a learned score per token (Linear D -> 1), softmax over the non-pad tokens, the
  weighted sum of the hidden states.

The body keeps its own parameter names under ``body.``, so a language model's weights load into it
(`model.init_from`) and LoRA adapts it; the pooler and head (``pooler.``, ``head.``) are new and
stay trainable under LoRA (`HEAD_PREFIXES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.validation import ConfigError, check_keys

__all__ = ["POOLINGS", "HEAD_PREFIXES", "HeadSettings", "SequenceClassifier", "pool"]

POOLINGS = ("last", "mean", "attention")
HEAD_PREFIXES = ("pooler.", "head.")


@dataclass(frozen=True)
class HeadSettings:
    """`model.head` of a run config: {type: classification, pooling, dropout, num_labels (from the task)}."""

    type: str = "classification"
    pooling: str = "mean"
    dropout: float = 0.0
    num_labels: int | None = None

    def __post_init__(self) -> None:
        if self.type != "classification":
            raise ConfigError(f"model.head.type={self.type!r}: the one head type is 'classification'.", field="type")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"model.head.pooling={self.pooling!r} must be one of {', '.join(POOLINGS)}.",
                              field="pooling")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"model.head.dropout={self.dropout!r} must be in [0, 1).", field="dropout")
        if self.num_labels is not None and (isinstance(self.num_labels, bool) or not isinstance(self.num_labels, int)
                                            or self.num_labels < 2):
            raise ConfigError(f"model.head.num_labels={self.num_labels!r} must be an integer >= 2 (the task gives it).",
                              field="num_labels")

    @classmethod
    def from_dict(cls, data: Any) -> HeadSettings:
        """From a run config's `model.head` mapping; unknown keys are a ConfigError naming the closest."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"model.head must be a mapping {{type: classification, pooling: mean}}, got {data!r}.")
        check_keys("model.head", data, ("type", "pooling", "dropout", "num_labels"))
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        """The mapping from_dict reads."""
        return {"type": self.type, "pooling": self.pooling, "dropout": self.dropout, "num_labels": self.num_labels}


def pool(hidden: Tensor, padding_mask: Tensor, how: str, scores: Tensor | None = None) -> Tensor:
    """(B, S, D) hidden states -> (B, D) over the non-pad tokens (padding_mask True at pads);
    `scores` (B, S) are the attention pooling's logits."""
    real = ~padding_mask
    if not bool(real.any(dim=1).all()):
        raise ValueError("pool: a row of the batch has no real token (its padding mask is all True).")
    if how == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(real)
        last = torch.where(real, positions, -1).max(dim=1).values  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how == "mean":
        weights = real.to(hidden.dtype)
        return (hidden * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
    if how == "attention":
        if scores is None:
            raise ValueError("pool: attention pooling needs scores (B, S).")
        weights = scores.masked_fill(padding_mask, float("-inf")).softmax(dim=1)
        return (hidden * weights[..., None]).sum(dim=1)
    raise ValueError(f"pool: how={how!r} must be one of {', '.join(POOLINGS)}.")


class SequenceClassifier(nn.Module):
    """Class logits (B, K) for token ids (B, S) from a body's pooled hidden states."""

    def __init__(self, body: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.0) -> None:
        super().__init__()
        HeadSettings(pooling=pooling, dropout=dropout, num_labels=num_labels)  # the same checks as a config
        if not (hasattr(body, "hidden_states") or hasattr(body, "encode")):
            raise ConfigError(f"model.head: {type(body).__name__} gives no hidden states to classify; "
                              "use model.name gpt (decoder-only) or transformer (its encoder).")
        width = int(body.config.d_model)  # type: ignore[union-attr]
        self.body, self.pooling, self.num_labels = body, pooling, num_labels
        self.pooler = nn.Linear(width, 1) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_labels)

    def hidden(self, src: Tensor, padding_mask: Tensor) -> Tensor:
        """The body's hidden states (B, S, D) of src."""
        if hasattr(self.body, "hidden_states"):
            # Right padding under causal attention: real tokens never see the pads after them and their
            # positions are 0.. either way, so the fast causal path is exact; other layouts pass the mask.
            right_padded = not bool((padding_mask[:, :-1] & ~padding_mask[:, 1:]).any())
            return self.body.hidden_states(src, None if right_padded else padding_mask)  # type: ignore[operator]
        return self.body.encode(src, padding_mask)["outputs"]  # type: ignore[operator]

    def forward(self, src: Tensor, src_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (B, K); src_padding_mask (B, S) True at pads (None: no pads)."""
        mask = torch.zeros_like(src, dtype=torch.bool) if src_padding_mask is None else src_padding_mask
        hidden = self.hidden(src, mask)
        scores = self.pooler(hidden).squeeze(-1) if self.pooler is not None else None
        return self.head(self.dropout(pool(hidden, mask, self.pooling, scores)))
