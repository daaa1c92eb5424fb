"""Scheduled sampling (Bengio et al., 2015) with the two-pass variant for Transformers.

The schedule gives eps(step), the probability of feeding the gold token (teacher forcing); with
probability 1 - eps a decoder input is replaced by the model's own prediction. eps decays from ~1
towards eps_min as training proceeds:

    constant:         eps = k
    linear:           eps = max(eps_min, k - c * step)            (clipped to at most 1)
    exponential:      eps = max(eps_min, k ** step),   0 < k < 1
    inverse_sigmoid:  eps = max(eps_min, k / (k + exp(step / k))),   k >= 1

A Transformer decodes all positions in parallel, so "the model's own prediction" comes from a
first pass under teacher forcing (Mihaylova & Martins, 2019; Duckworth et al., 2019): its
predictions are mixed into the decoder input of the second pass, the one the loss is computed on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from treadmill.constants import PAD_ID

__all__ = ["ScheduleKind", "ScheduledSamplingSchedule", "mix_two_pass"]

ScheduleKind = Literal["constant", "linear", "exponential", "inverse_sigmoid"]
_KINDS = ("constant", "linear", "exponential", "inverse_sigmoid")


@dataclass(frozen=True)
class ScheduledSamplingSchedule:
    """Teacher-forcing probability eps(step) for scheduled sampling; call it with the step."""

    kind: ScheduleKind
    k: float
    c: float = 0.0
    eps_min: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(
                f"ScheduledSamplingSchedule.kind must be one of {_KINDS}, got {self.kind!r}."
            )
        if not 0.0 <= self.eps_min <= 1.0:
            raise ValueError(
                f"ScheduledSamplingSchedule.eps_min must be in [0, 1], got {self.eps_min}."
            )
        if self.kind == "constant" and not 0.0 <= self.k <= 1.0:
            raise ValueError(
                f"constant schedule: k is the teacher-forcing probability, in [0, 1]; got {self.k}."
            )
        if self.kind == "linear":
            if self.k <= 0.0:
                raise ValueError(f"linear schedule: k (eps at step 0) must be > 0, got {self.k}.")
            if self.c <= 0.0:
                raise ValueError(
                    f"linear schedule: c (decay per step) must be > 0, got {self.c}; e.g. "
                    "c = (1 - eps_min) / decay_steps."
                )
        if self.kind == "exponential" and not 0.0 < self.k < 1.0:
            raise ValueError(
                f"exponential schedule: k must be in (0, 1) (eps = k ** step), got {self.k}; "
                "e.g. 0.9999 for a decay over ~10^4 steps."
            )
        if self.kind == "inverse_sigmoid" and self.k < 1.0:
            raise ValueError(
                f"inverse_sigmoid schedule: k must be >= 1 (eps = k / (k + exp(step / k))), got "
                f"{self.k}; eps crosses 0.5 near step k * ln(k)."
            )

    @classmethod
    def constant(cls, k: float) -> ScheduledSamplingSchedule:
        """eps = k at every step (k = 1: pure teacher forcing)."""
        return cls("constant", k)

    @classmethod
    def linear(
        cls, k: float = 1.0, c: float = 1e-4, eps_min: float = 0.0
    ) -> ScheduledSamplingSchedule:
        """eps = max(eps_min, k - c * step)."""
        return cls("linear", k, c, eps_min)

    @classmethod
    def exponential(cls, k: float, eps_min: float = 0.0) -> ScheduledSamplingSchedule:
        """eps = max(eps_min, k ** step), 0 < k < 1."""
        return cls("exponential", k, eps_min=eps_min)

    @classmethod
    def inverse_sigmoid(cls, k: float, eps_min: float = 0.0) -> ScheduledSamplingSchedule:
        """eps = max(eps_min, k / (k + exp(step / k))), k >= 1."""
        return cls("inverse_sigmoid", k, eps_min=eps_min)

    def __call__(self, step: int) -> float:
        """Teacher-forcing probability at optimizer step `step` (>= 0)."""
        if step < 0:
            raise ValueError(f"scheduled sampling step must be >= 0, got {step}.")
        if self.kind == "constant":
            return self.k
        if self.kind == "linear":
            eps = min(1.0, self.k - self.c * step)
        elif self.kind == "exponential":
            eps = self.k**step
        else:
            exponent = step / self.k
            # exp overflows past ~709; by then eps is below any float anyway.
            eps = self.k / (self.k + math.exp(exponent)) if exponent < 700.0 else 0.0
        return max(self.eps_min, eps)


def mix_two_pass(
    model: Callable[..., Tensor],
    src: Tensor,
    tgt_in: Tensor,
    src_padding_mask: Tensor | None,
    teacher_forcing_prob: float,
    generator: torch.Generator | None = None,
    *,
    sample: bool = False,
    pad_id: int = PAD_ID,
) -> Tensor:
    """Return tgt_in with each non-pad position after BOS swapped for the model's prediction w.p. 1-eps.

    The first pass runs `model(src, tgt_in, src_padding_mask=...)` without gradient in the model's
    current mode; the prediction for decoder input position t (> 0) is the argmax (or, with
    `sample=True`, a draw) of the logits at position t - 1. PAD is never predicted (a PAD inside
    the input would read as padding), and padding positions stay PAD. `generator` drives the
    coin flips and the sampling, for reproducibility.
    """
    if not 0.0 <= teacher_forcing_prob <= 1.0:
        raise ValueError(f"teacher_forcing_prob must be in [0, 1], got {teacher_forcing_prob}.")
    if tgt_in.dim() != 2:
        raise ValueError(
            f"tgt_in must be (batch, tgt_len) token ids, got shape {tuple(tgt_in.shape)}."
        )
    if teacher_forcing_prob == 1.0 or tgt_in.size(1) < 2:
        return tgt_in  # nothing to mix: skip the extra forward pass
    with torch.no_grad():
        logits = model(src, tgt_in, src_padding_mask=src_padding_mask)  # (batch, tgt_len, vocab)
        if logits.shape[:2] != tgt_in.shape:
            raise ValueError(
                f"model returned logits {tuple(logits.shape)} for tgt_in {tuple(tgt_in.shape)}; "
                "expected (batch, tgt_len, vocab) under teacher forcing."
            )
        logits = logits[:, :-1].float()  # (batch, tgt_len - 1, vocab): predicts positions 1..
        logits[..., pad_id] = float("-inf")
        if sample:
            probs = logits.softmax(dim=-1).flatten(0, 1)  # (batch * (tgt_len - 1), vocab)
            predicted = torch.multinomial(probs, 1, generator=generator).view(logits.shape[:2])
        else:
            predicted = logits.argmax(dim=-1)  # (batch, tgt_len - 1)
    coin = torch.rand(predicted.shape, generator=generator, device=tgt_in.device)
    replace = (coin >= teacher_forcing_prob) & (tgt_in[:, 1:] != pad_id)  # (batch, tgt_len - 1)
    mixed = tgt_in.clone()
    mixed[:, 1:] = torch.where(replace, predicted.to(tgt_in.dtype), tgt_in[:, 1:])
    return mixed
