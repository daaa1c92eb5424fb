"""What the searches produce (SearchResult, tensors) and what `generate()` returns (GenerationOutput)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Sequences = list[list[int]] | list[list[list[int]]]


@dataclass
class SearchResult:
    """Raw search output: n hypotheses per source, best first, padded with PAD.

    A hypothesis whose score is -inf does not exist (a search space smaller than n).
    """

    tokens: Tensor  # (batch, n, max_len) long, PAD after the end, never EOS
    lengths: Tensor  # (batch, n) long, number of output tokens
    scores: Tensor  # (batch, n) float: summed log-probs (length-penalised for beam)
    attention: Tensor | None  # (batch, n, max_len, src_len) float, or None


@dataclass
class GenerationOutput:
    """Decoded outputs for a batch.

    * `sequences`: per input, the output token ids (no BOS, no prompt, cut before EOS); with
      num_return_sequences > 1, per input a list of such lists, best first.
    * `tokens`: the same, PAD-padded: (batch, out_len), or (batch, n, out_len).
    * `scores` (return_scores=True): summed model log-probabilities of each output including its
      EOS; for beam search divided by the GNMT length penalty when length_penalty != 0.
      Shape (batch,) or (batch, n).
    * `attention` (return_attention=True, encoder-decoder models that return attention): per input,
      an (out_len, src_len) tensor (src_len = that input's unpadded length), or per input a list
      of them with n > 1.
    """

    sequences: Sequences
    tokens: Tensor
    scores: Tensor | None = None
    attention: list[Any] | None = None


def build_output(
    result: SearchResult,
    *,
    src_padding_mask: Tensor | None,
    pad_id: int,
    return_scores: bool,
    return_attention: bool,
) -> GenerationOutput:
    """Turn padded search tensors into per-input lists (and squeeze n when it is 1)."""
    batch, n, _ = result.tokens.shape
    exists = torch.isfinite(result.scores)  # (batch, n)
    lengths = result.lengths.masked_fill(~exists, 0)
    width = int(lengths.max()) if lengths.numel() else 0
    tokens = result.tokens[:, :, :width].masked_fill(~exists[:, :, None], pad_id)

    rows = tokens.tolist()
    lens = lengths.tolist()
    ok = exists.tolist()
    sequences = [[rows[b][j][: lens[b][j]] for j in range(n) if ok[b][j]] for b in range(batch)]

    attention: list[Any] | None = None
    if return_attention and result.attention is not None:
        attention = []
        for b in range(batch):
            keep = slice(None) if src_padding_mask is None else ~src_padding_mask[b]
            per = [result.attention[b, j, : lens[b][j]][:, keep] for j in range(n) if ok[b][j]]
            attention.append(per)

    scores = result.scores if return_scores else None
    if n == 1:
        # One sequence per input: drop the n axis everywhere.
        sequences = [seqs[0] if seqs else [] for seqs in sequences]
        tokens = tokens[:, 0]
        scores = scores[:, 0] if scores is not None else None
        if attention is not None:
            attention = [per[0] if per else None for per in attention]
    return GenerationOutput(sequences=sequences, tokens=tokens, scores=scores, attention=attention)
