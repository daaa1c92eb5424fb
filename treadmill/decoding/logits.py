"""Logits processors: constraints (forbidden tokens, lengths, n-grams, forced prefix) and sampling filters.

Every processor takes scores of shape (rows, vocab) and returns a new tensor of the same shape in
which forbidden tokens are -inf. Constraint processors never renormalise: the allowed tokens keep the
model's log-probabilities, so the scores that decoding reports are the model's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

NEG_INF = float("-inf")


@dataclass
class RowLimits:
    """Per-row length limits and forced prefix (rows = sources, beams or samples)."""

    max_lengths: Tensor  # (rows,) cap on output tokens; EOS is forced at step == cap
    min_lengths: Tensor  # (rows,) EOS is blocked while step < min_length
    prefix: Tensor  # (rows, prefix_width) forced tokens, long (columns past the length unused)
    prefix_lengths: Tensor  # (rows,) number of forced tokens per row

    def select(self, rows: Tensor) -> RowLimits:
        """The same limits for a subset / reordering of the rows."""
        return RowLimits(
            self.max_lengths.index_select(0, rows),
            self.min_lengths.index_select(0, rows),
            self.prefix.index_select(0, rows),
            self.prefix_lengths.index_select(0, rows),
        )

    def repeat_rows(self, n: int) -> RowLimits:
        """Each row repeated n times (row i -> rows i*n .. i*n+n-1), matching ModelStepper."""
        index = torch.arange(self.max_lengths.size(0), device=self.max_lengths.device)
        return self.select(index.repeat_interleave(n))


def block_tokens(scores: Tensor, token_ids: list[int]) -> Tensor:
    """Forbid `token_ids` everywhere (PAD and BOS are never generated)."""
    scores = scores.clone()
    scores[:, token_ids] = NEG_INF
    return scores


def block_eos_before_min_len(scores: Tensor, step: int, min_lengths: Tensor, eos_id: int) -> Tensor:
    """Forbid EOS in rows that have fewer than their min_length output tokens."""
    blocked = step < min_lengths  # (rows,)
    if not bool(blocked.any()):
        return scores
    scores = scores.clone()
    scores[:, eos_id] = scores[:, eos_id].masked_fill(blocked, NEG_INF)
    return scores


def force_eos_at_max_len(
    scores: Tensor, step: int, max_lengths: Tensor, eos_id: int, values: Tensor | None = None
) -> Tensor:
    """Rows at their cap may only emit EOS, scored from `values` (default: `scores`)."""
    eos = torch.full_like(max_lengths, eos_id)
    return force_tokens(scores, step >= max_lengths, eos, values)


def force_tokens(
    scores: Tensor, rows: Tensor, token_ids: Tensor, values: Tensor | None = None
) -> Tensor:
    """In rows where `rows` (bool, (rows,)) is True allow only `token_ids[row]` (rows,).

    The forced token keeps its score from `values` (default `scores`): pass the unconstrained
    log-probabilities so that a forced token is scored by the model even if a softer constraint
    (min_len, n-gram blocking) had banned it.
    """
    if not bool(rows.any()):
        return scores
    keep = (scores if values is None else values).gather(1, token_ids[:, None])  # (rows, 1)
    forced = torch.full_like(scores, NEG_INF).scatter(1, token_ids[:, None], keep)
    return torch.where(rows[:, None], forced, scores)


def force_prefix(
    scores: Tensor,
    step: int,
    prefix: Tensor,
    prefix_lengths: Tensor,
    values: Tensor | None = None,
) -> Tensor:
    """Rows whose forced prefix is longer than `step` may only emit prefix[row, step]."""
    if step >= prefix.size(1):
        return scores
    return force_tokens(scores, step < prefix_lengths, prefix[:, step], values)


def no_repeat_ngram(scores: Tensor, generated: Tensor, n: int) -> Tensor:
    """Forbid tokens that would repeat an n-gram already present in `generated` (rows, t)."""
    rows, t = generated.shape
    if n <= 0 or t < n:
        return scores
    if n == 1:
        banned_ids, hits = generated, torch.ones_like(generated, dtype=scores.dtype)
    else:
        ngrams = generated.unfold(1, n, 1)  # (rows, t - n + 1, n)
        tail = generated[:, t - n + 1 :]  # (rows, n - 1): the n-gram being completed
        matches = (ngrams[:, :, :-1] == tail[:, None, :]).all(dim=-1)  # (rows, t - n + 1)
        banned_ids, hits = ngrams[:, :, -1], matches.to(scores.dtype)
    # scatter_add (not scatter) because one token can be banned by several n-grams.
    counts = torch.zeros_like(scores).scatter_add_(1, banned_ids, hits)
    return scores.masked_fill(counts > 0, NEG_INF)


def apply_constraints(
    scores: Tensor,
    step: int,
    generated: Tensor,
    limits: RowLimits,
    *,
    eos_id: int,
    never_generate: list[int],
    no_repeat_ngram_size: int,
) -> Tensor:
    """All hard constraints, in order; the forced prefix and max length override the others.

    `scores` (rows, vocab) are log-probabilities for output token number `step`; `generated`
    (rows, step) the tokens so far.
    """
    model_scores = scores
    scores = block_tokens(scores, never_generate)
    scores = no_repeat_ngram(scores, generated, no_repeat_ngram_size)
    scores = block_eos_before_min_len(scores, step, limits.min_lengths, eos_id)
    if no_repeat_ngram_size > 0:
        # A row whose every token got banned (tiny vocabularies) ends instead of producing NaN.
        dead = ~torch.isfinite(scores).any(dim=-1)
        eos = torch.full_like(limits.max_lengths, eos_id)
        scores = force_tokens(scores, dead, eos, model_scores)
    scores = force_eos_at_max_len(scores, step, limits.max_lengths, eos_id, model_scores)
    return force_prefix(scores, step, limits.prefix, limits.prefix_lengths, model_scores)


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide logits by the temperature (< 1 sharpens, > 1 flattens)."""
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits per row (ties with the k-th are kept); 0 disables."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = logits.topk(k, dim=-1).values[:, -1:]  # (rows, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of top tokens whose probability mass reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly better tokens
    drop_sorted = mass_before >= p  # the top token has mass_before 0 < p, so one always stays
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def sample_tokens(
    log_probs: Tensor,
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
) -> Tensor:
    """Draw one token per row from the filtered distribution, (rows, vocab) -> (rows,)."""
    logits = apply_temperature(log_probs, temperature)
    logits = top_k_filter(logits, top_k)
    logits = top_p_filter(logits, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
