"""Greedy decoding and sampling: one token per row per step, finished rows leave the batch.

The loop, in pseudo-code (rows = sources, or sources x num_return_sequences when sampling):

    for step in 0 .. max(max_lengths):
        log_probs = model's next-token log-probs               (active rows, vocab)
        constrained = PAD/BOS banned, n-grams, min_len, EOS at max_len, forced prefix
        token = argmax(constrained)  or  a sample from temperature/top-k/top-p(constrained)
        score += log_probs[token]                               # the model's own log-prob
        rows that chose EOS are finished: drop them from the batch (memory, cache, tokens)

Each row's result depends only on its own source, so a source decodes to the same tokens alone
or inside a padded batch.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import torch
from torch import Tensor

from treadmill.decoding.config import GenerationConfig
from treadmill.decoding.logits import RowLimits, sample_tokens
from treadmill.decoding.output import SearchResult
from treadmill.decoding.stepper import ModelStepper, constrained_step


@dataclass
class GreedyStep:
    """What one step of greedy/sampling produced, for `stream()`."""

    step: int
    row_ids: Tensor  # (active,) original row of each active row
    tokens: Tensor  # (active,) chosen tokens; EOS for rows that just finished


def greedy_search(
    stepper: ModelStepper,
    limits: RowLimits,
    cfg: GenerationConfig,
    generator: torch.Generator | None = None,
) -> Generator[GreedyStep, None, SearchResult]:
    """Greedy (cfg.strategy 'greedy') or sampled ('sample') decoding of every row of `stepper`.

    Yields a GreedyStep per step and returns a SearchResult with num_return_sequences outputs
    per source in the order they were sampled (the stepper's rows are repeated for sampling).
    """
    n = cfg.num_return_sequences if cfg.strategy == "sample" else 1
    stepper.repeat_rows(n)
    limits = limits.repeat_rows(n) if n > 1 else limits
    rows, device = stepper.rows, stepper.tokens.device
    longest = int(limits.max_lengths.max())
    out = torch.full((rows, longest), cfg.pad_id, dtype=torch.long, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    scores = torch.zeros(rows, dtype=torch.float32, device=device)
    attention: Tensor | None = None
    active = torch.arange(rows, device=device)

    for step in range(longest + 1):
        log_probs, constrained, step_attention = constrained_step(stepper, step, limits, cfg)
        tokens = _choose(constrained, cfg, generator)  # (active,)
        scores[active] += log_probs.gather(1, tokens[:, None]).squeeze(1)
        ended = tokens == cfg.eos_id
        if step_attention is not None and attention is None:
            attention = step_attention.new_zeros(rows, longest, step_attention.size(-1))
        if step < longest:
            out[active, step] = tokens.masked_fill(ended, cfg.pad_id)
            lengths[active] += (~ended).long()
            if attention is not None and step_attention is not None:
                attention[active, step] = step_attention
        yield GreedyStep(step, active, tokens)

        keep = ~ended
        if not cfg.return_scores:
            # The forced EOS at the cap only adds its log-prob to the score: skip that step.
            keep &= step + 1 < limits.max_lengths
        if not bool(keep.all()):
            index = keep.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            stepper.select(index)
            limits = limits.select(index)
            active, tokens = active[index], tokens[index]
        stepper.append(tokens)

    def per_source(t: Tensor) -> Tensor:
        return t.view(rows // n, n, *t.shape[1:])  # (batch, n, ...)

    return SearchResult(
        tokens=per_source(out),
        lengths=per_source(lengths),
        scores=per_source(scores),
        attention=per_source(attention) if attention is not None else None,
    )


def _choose(scores: Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> Tensor:
    """Argmax, or a draw from the temperature/top-k/top-p filtered distribution, (rows,)."""
    if cfg.strategy != "sample":
        return scores.argmax(dim=-1)
    if generator is None:
        raise ValueError("strategy='sample' needs a torch.Generator (generate() makes one)")
    return sample_tokens(
        scores, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, generator=generator
    )
