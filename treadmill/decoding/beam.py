"""Batched beam search: beams flattened into the batch dimension, no Python loop over examples.

Pseudo-code, for every active example at once (K = beam_size, rows = examples x K):

    scores of the K beams start as [0, -inf, ..., -inf]     (one live beam, no duplicates)
    for step in 0 .. max(max_lengths):
        log_probs = model's next-token log-probs             (rows, vocab), constrained
        candidates = beam score + log_probs                  (examples, K * vocab)
        take the best 2K candidates                          (at most K of them end in EOS)
        EOS candidates ranked in the top K are finished: score / lp(|Y|) joins the example's
            K best finished hypotheses (tensors (examples, K, ...), kept sorted)
        the best K non-EOS candidates are the new beams: reorder tokens and caches by beam index
        an example is done when its finished set can no longer change; done examples leave
            the batch

`|Y|` counts the scored tokens (output + EOS) and lp(|Y|) = ((5 + |Y|) / 6) ** alpha (GNMT), or
|Y| ** alpha with `length_normalization="length"` (transformers' convention).
A beam reaching its max length is closed with EOS (scored by the model), so finishing is never
a truncation. By default (`early_stopping=False`) an example stops once no live beam can beat
the n-th best finished hypothesis (n = num_return_sequences), using the exact bound (with
alpha > 0 the best a live beam can reach is its score / lp(max length)): the n returned are the
best the beam can reach. `early_stopping=True` is fairseq's rule, stop once K hypotheses
finished, whatever their scores: cheaper, but with a confident model the K - 1 junk beams end
early and fill the K slots before the right, longer hypothesis ends.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from treadmill.decoding.config import GenerationConfig
from treadmill.decoding.logits import NEG_INF, RowLimits
from treadmill.decoding.output import SearchResult
from treadmill.decoding.stepper import ModelStepper, constrained_step


def length_penalty(lengths: Tensor | int, alpha: float, form: str = "gnmt") -> Tensor | float:
    """Length penalty for |Y| scored tokens (output + EOS): GNMT ((5 + |Y|) / 6) ** alpha, or
    |Y| ** alpha with form="length" (transformers' convention)."""
    if isinstance(lengths, Tensor):
        lengths = lengths.float()
    if form == "length":
        return lengths**alpha
    return ((5.0 + lengths) / 6.0) ** alpha


@dataclass
class FinishedBeams:
    """The K best finished hypotheses of each active example, sorted best first."""

    scores: Tensor  # (examples, K) length-penalised; -inf = empty slot
    tokens: Tensor  # (examples, K, longest) long, PAD after the end
    lengths: Tensor  # (examples, K) output tokens (EOS excluded)
    attention: Tensor | None  # (examples, K, longest, src_len)

    @classmethod
    def empty(cls, examples: int, k: int, longest: int, pad_id: int, device: torch.device) -> FinishedBeams:
        """No finished hypotheses yet."""
        return cls(
            scores=torch.full((examples, k), NEG_INF, device=device),
            tokens=torch.full((examples, k, longest), pad_id, dtype=torch.long, device=device),
            lengths=torch.zeros(examples, k, dtype=torch.long, device=device),
            attention=None,
        )

    def select(self, examples: Tensor) -> FinishedBeams:
        """Keep only `examples` (index or bool mask over dim 0)."""
        attention = self.attention[examples] if self.attention is not None else None
        return FinishedBeams(
            self.scores[examples], self.tokens[examples], self.lengths[examples], attention
        )

    def add(
        self,
        scores: Tensor,
        tokens: Tensor,
        length: int,
        attention: Tensor | None,
        pad_id: int,
    ) -> FinishedBeams:
        """Merge candidates (examples, C) with score -inf = not finishing; keep the K best.

        `tokens` (examples, C, length), `attention` (examples, C, length, src_len).
        """
        k, longest = self.scores.size(1), self.tokens.size(2)
        merged = torch.cat([self.scores, scores], dim=1)  # (examples, K + C)
        # Stable sort: on equal scores the earlier-finished hypothesis wins, deterministically.
        order = merged.sort(dim=1, descending=True, stable=True).indices[:, :k]  # (examples, K)
        new_tokens = F.pad(tokens, (0, longest - length), value=pad_id)
        all_tokens = torch.cat([self.tokens, new_tokens], dim=1)  # (examples, K + C, longest)
        new_lengths = torch.full_like(scores, length, dtype=torch.long)
        all_lengths = torch.cat([self.lengths, new_lengths], dim=1)
        gathered_attention = None
        if attention is not None:
            new_attention = F.pad(attention, (0, 0, 0, longest - length))
            old = self.attention
            if old is None:
                old = new_attention.new_zeros(new_attention.shape[0], k, *new_attention.shape[2:])
            all_attention = torch.cat([old, new_attention], dim=1)
            gathered_attention = all_attention[_batch_index(order), order]
        return FinishedBeams(
            scores=merged.gather(1, order),
            tokens=all_tokens[_batch_index(order), order],
            lengths=all_lengths.gather(1, order),
            attention=gathered_attention,
        )


@dataclass
class BeamStep:
    """State after one beam step, for `stream()` (references, nothing copied)."""

    step: int
    generated: Tensor  # (rows, step) tokens of the beams before this step
    rows: Tensor  # (examples, K) flat row each new beam extends
    tokens: Tensor  # (examples, K) token each new beam appended
    beam_scores: Tensor  # (examples, K) raw scores of the new beams, -inf = dead
    finished: FinishedBeams
    done: Tensor  # (examples,) bool


def beam_search(
    stepper: ModelStepper, limits: RowLimits, cfg: GenerationConfig
) -> Generator[BeamStep, None, SearchResult]:
    """Beam search over every source row of `stepper`; yields BeamSteps, returns a SearchResult."""
    # Long because: one search step reads top to bottom (score, finish, keep K, drop done examples,
    # advance) over a dozen shared tensors; as helpers it would pass them all back and forth.
    k, n = cfg.beam_size, cfg.num_return_sequences
    batch, device = stepper.rows, stepper.tokens.device
    stepper.repeat_rows(k, share_sources=True)
    row_limits = limits.repeat_rows(k)
    longest = int(limits.max_lengths.max())

    beam_scores = torch.full((batch, k), NEG_INF, device=device)
    beam_scores[:, 0] = 0.0
    finished = FinishedBeams.empty(batch, k, longest, cfg.pad_id, device)
    example_ids = torch.arange(batch, device=device)
    alive_attention: Tensor | None = None  # (rows, step, src_len)
    result = _empty_result(batch, n, longest, cfg.pad_id, device)

    for step in range(longest + 1):
        examples = example_ids.numel()
        _, constrained, step_attention = constrained_step(stepper, step, row_limits, cfg)
        if step_attention is not None and alive_attention is None:
            alive_attention = step_attention.new_zeros(stepper.rows, 0, step_attention.size(-1))
        vocab = constrained.size(1)
        candidates = (beam_scores.view(-1, 1) + constrained).view(examples, k * vocab)
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (examples, 2K) best first
        offsets = k * torch.arange(examples, device=device)[:, None]
        source_rows = top_index // vocab + offsets  # (examples, 2K) flat row extended
        tokens = top_index % vocab
        is_eos = tokens == cfg.eos_id

        ends = is_eos & torch.isfinite(top_scores)
        ends[:, k:] = False  # only EOS ranked among the best K finishes (fairseq, HF)
        if bool(ends.any()):
            finished = _finish(
                finished, ends, top_scores, source_rows, step, stepper, alive_attention, cfg
            )

        # The best K candidates that do not end become the beams (there are >= K of them).
        keep_order = is_eos.to(torch.uint8).sort(dim=1, stable=True).indices[:, :k]
        beam_scores = top_scores.gather(1, keep_order)  # (examples, K)
        rows = source_rows.gather(1, keep_order)
        tokens = tokens.gather(1, keep_order)
        done = _is_done(finished, beam_scores, step, limits.max_lengths, cfg, n)
        yield BeamStep(step, stepper.generated, rows, tokens, beam_scores, finished, done)

        if bool(done.any()):
            _store(result, example_ids[done], finished.select(done), n)
        if bool(done.all()):
            break
        dropped = bool(done.any())
        if dropped:
            keep = ~done
            rows, tokens, beam_scores = rows[keep], tokens[keep], beam_scores[keep]
            finished, example_ids = finished.select(keep), example_ids[keep]
            limits = limits.select(keep.nonzero().squeeze(1))
            row_limits = limits.repeat_rows(k)
        flat_rows = rows.reshape(-1)
        # Beams move only within their example unless finished examples were dropped.
        stepper.select(flat_rows, same_sources=not dropped)
        stepper.append(tokens.reshape(-1))
        if alive_attention is not None and step_attention is not None:
            new = step_attention.index_select(0, flat_rows)[:, None]  # (rows, 1, src_len)
            alive_attention = torch.cat([alive_attention.index_select(0, flat_rows), new], 1)
    return result


def _empty_result(
    batch: int, n: int, longest: int, pad_id: int, device: torch.device
) -> SearchResult:
    """n missing (-inf) hypotheses per example, filled in as examples finish."""
    return SearchResult(
        tokens=torch.full((batch, n, longest), pad_id, dtype=torch.long, device=device),
        lengths=torch.zeros(batch, n, dtype=torch.long, device=device),
        scores=torch.full((batch, n), NEG_INF, device=device),
        attention=None,
    )


def _finish(
    finished: FinishedBeams,
    ends: Tensor,
    top_scores: Tensor,
    source_rows: Tensor,
    step: int,
    stepper: ModelStepper,
    alive_attention: Tensor | None,
    cfg: GenerationConfig,
) -> FinishedBeams:
    """Add the candidates flagged in `ends` (examples, 2K) to the finished hypotheses."""
    examples, width = ends.shape
    flat = source_rows.reshape(-1)
    tokens = stepper.generated.index_select(0, flat).view(examples, width, step)
    attention = None
    if alive_attention is not None:
        src_len = alive_attention.size(-1)
        attention = alive_attention.index_select(0, flat).view(examples, width, step, src_len)
    penalised = top_scores / length_penalty(step + 1, cfg.length_penalty, cfg.length_normalization)
    scores = torch.where(ends, penalised, NEG_INF)
    return finished.add(scores, tokens, step, attention, cfg.pad_id)


def _is_done(
    finished: FinishedBeams,
    beam_scores: Tensor,
    step: int,
    max_lengths: Tensor,
    cfg: GenerationConfig,
    n: int,
) -> Tensor:
    """Per example: True when no live beam can still change the n best finished hypotheses."""
    no_beam_alive = ~torch.isfinite(beam_scores).any(dim=1)
    if cfg.early_stopping:  # fairseq's rule: K finished, whatever their scores
        return no_beam_alive | torch.isfinite(finished.scores[:, -1])
    nth_best = finished.scores[:, n - 1]  # -inf while fewer than n finished
    best_alive = beam_scores.max(dim=1).values  # raw log-prob, only decreases from here
    alpha, form = cfg.length_penalty, cfg.length_normalization
    if alpha > 0:  # longer is better for a fixed raw score: the cap is the best case
        bound = best_alive / length_penalty(max_lengths + 1, alpha, form)
    elif alpha < 0:  # shorter is better: finishing at the next step is the best case
        bound = best_alive / length_penalty(step + 2, alpha, form)
    else:
        bound = best_alive
    return no_beam_alive | (torch.isfinite(nth_best) & (bound <= nth_best))


def _store(result: SearchResult, ids: Tensor, finished: FinishedBeams, n: int) -> None:
    """Write the n best finished hypotheses of examples `ids` into the result."""
    result.tokens[ids] = finished.tokens[:, :n]
    result.lengths[ids] = finished.lengths[:, :n]
    result.scores[ids] = finished.scores[:, :n]
    if finished.attention is not None:
        if result.attention is None:
            batch, _, longest = result.tokens.shape
            src_len = finished.attention.size(-1)
            result.attention = finished.attention.new_zeros(batch, n, longest, src_len)
        result.attention[ids] = finished.attention[:, :n]


def _batch_index(order: Tensor) -> Tensor:
    return torch.arange(order.size(0), device=order.device)[:, None]
