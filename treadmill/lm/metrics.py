"""Language-model metrics from the mean next-token loss: perplexity and bits per character."""

from __future__ import annotations

import math

__all__ = ["perplexity_from_loss", "bits_per_char"]

# exp() of a diverged loss would overflow; perplexities past e^50 say the same thing.
_MAX_LOG_PERPLEXITY = 50.0


def perplexity_from_loss(nats_per_token: float) -> float:
    """exp(mean next-token loss in nats)."""
    return math.exp(min(nats_per_token, _MAX_LOG_PERPLEXITY))


def bits_per_char(nats_per_token: float, chars_per_token: float) -> float:
    """Bits per character: the loss of all tokens (nats/token x tokens) over the characters they
    cover, in bits. Independent of the tokenizer, so char and BPE models compare."""
    return nats_per_token / chars_per_token / math.log(2)
