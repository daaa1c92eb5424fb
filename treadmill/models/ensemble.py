"""Seq2SeqEnsemble: several encoder-decoder models decoded as one, averaging their probabilities.

The ensemble implements the same protocol as its members (docs/model_protocol.md), so greedy,
beam search and sampling in ``treadmill.decoding.generate()`` work on it unchanged. Its "logits"
are the log of the members' mean next-token probabilities: already normalised, so the
log-softmax that decoding applies leaves them as they are, and a temperature or a top-k filter acts
on the ensemble's distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Seq2SeqEnsemble"]


class Seq2SeqEnsemble(nn.Module):
    """Encoder-decoder models that share source and target vocabularies, decoded together."""

    is_encoder_decoder = True

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(models) == 0:
            raise ValueError("Seq2SeqEnsemble needs at least one model; got none.")
        for index, model in enumerate(models):
            if not getattr(model, "is_encoder_decoder", False):
                raise ValueError(
                    f"Seq2SeqEnsemble member {index} ({type(model).__name__}) is not an encoder-decoder model; "
                    "only models with is_encoder_decoder=True can be ensembled."
                )
        self.members = nn.ModuleList(models)
        # Ensembles are built from trained models to decode with; a fresh nn.Module is in training
        # mode, and restoring that mode after generate() would switch the members' dropout on.
        self.eval()

    def _mean_log_probs(self, logits: Sequence[Tensor]) -> Tensor:
        """log(mean_i softmax(logits_i)) over the last dimension, checking the vocabularies agree."""
        vocab = logits[0].shape[-1]
        for index, member_logits in enumerate(logits):
            if member_logits.shape != logits[0].shape:
                raise ValueError(
                    f"Seq2SeqEnsemble member {index} returned logits of shape {tuple(member_logits.shape)}, "
                    f"member 0 {tuple(logits[0].shape)} (vocabulary {vocab}): ensembled models must share "
                    "their target vocabulary."
                )
        stacked = torch.stack([member_logits.float().log_softmax(-1) for member_logits in logits])
        return torch.logsumexp(stacked, dim=0) - math.log(len(logits))

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher forcing: log mean probabilities (B, T, V) for tgt_in (B, T) starting with BOS."""
        return self._mean_log_probs(
            [member(src, tgt_in, src_padding_mask, tgt_padding_mask) for member in self.members]
        )

    def _protocol_members(self) -> list[Any]:
        """The members, typed as protocol models (nn.ModuleList yields plain Modules)."""
        return list(self.members)

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Any, ...]:
        """One memory per member, batch first like each member's own."""
        return tuple(member.encode(src, src_padding_mask) for member in self._protocol_members())

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: tuple[Any, ...],
        src_padding_mask: Tensor | None = None,
        cache: tuple[Any, ...] | None = None,
        return_attention: bool = False,
    ) -> tuple[Any, ...]:
        """(log mean probabilities (B, T - k, V), cache) or with the members' mean attention."""
        caches = cache if cache is not None else (None,) * len(self.members)
        outputs = [
            member.decode(
                tgt_prefix,
                member_memory,
                src_padding_mask,
                member_cache,
                return_attention=return_attention,
            )
            for member, member_memory, member_cache in zip(
                self._protocol_members(), memory, caches, strict=True
            )
        ]
        log_probs = self._mean_log_probs([output[0] for output in outputs])
        new_cache = tuple(output[1] for output in outputs)
        if not return_attention:
            return log_probs, new_cache
        weights = [output[2] for output in outputs]
        # A member without attention (returns None) leaves the ensemble without a map to show.
        attention = None if any(w is None for w in weights) else torch.stack(weights).mean(0)
        return log_probs, new_cache, attention
