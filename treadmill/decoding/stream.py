"""stream(): tokens of a batch of one as they are decided, for interactive use (beam search too)."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.decoding.beam import BeamStep
from treadmill.decoding.config import GenerationConfig, resolve_config
from treadmill.decoding.generate import evaluating, start_search
from treadmill.decoding.greedy import GreedyStep
from treadmill.decoding.inputs import TokenBatch, prepare
from treadmill.decoding.output import SearchResult


def stream(
    model: nn.Module,
    src: TokenBatch | None = None,
    src_padding_mask: Tensor | None = None,
    *,
    prompt: TokenBatch | None = None,
    prefix: Sequence[int] | Sequence[Sequence[int]] | None = None,
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> Iterator[int]:
    """Yield the output token ids of one input as soon as they are certain (EOS not yielded).

    Greedy and sampling yield each token when it is chosen. Beam search yields the prefix that
    every live beam and every finished hypothesis still in the running agree on (so it can never
    be retracted), and the rest of the best hypothesis at the end. The tokens joined equal
    `generate(...)`'s sequence for the same arguments. Arguments are those of `generate()`;
    they are validated (and the source encoded) when stream() is called.
    """
    cfg = resolve_config(config, overrides)
    if cfg.num_return_sequences != 1:
        raise ValueError(
            f"stream() yields one sequence; got num_return_sequences={cfg.num_return_sequences}"
        )
    with evaluating(model):
        prepared = prepare(model, src, src_padding_mask, prompt, prefix, cfg)
    if prepared.stepper.rows != 1:
        raise ValueError(
            f"stream() decodes a batch of one, got {prepared.stepper.rows} inputs; "
            "use generate() for batches"
        )
    return _stream_tokens(model, start_search(prepared, cfg), cfg)


def _stream_tokens(
    model: nn.Module, search: Generator[Any, None, SearchResult], cfg: GenerationConfig
) -> Iterator[int]:
    emitted: list[int] = []
    while True:
        # Eval + inference mode only while the search runs, never while the caller holds control.
        with evaluating(model):
            try:
                event = next(search)
            except StopIteration as stop:
                result: SearchResult = stop.value
                break
        for token in _new_certain_tokens(event, len(emitted), cfg):
            emitted.append(token)
            yield token
    final = result.tokens[0, 0, : int(result.lengths[0, 0])].tolist()
    if final[: len(emitted)] != emitted:  # an internal invariant, not a user error
        raise RuntimeError(f"stream() emitted {emitted} but the search ended with {final}")
    yield from final[len(emitted) :]


def _new_certain_tokens(
    event: GreedyStep | BeamStep, n_emitted: int, cfg: GenerationConfig
) -> list[int]:
    """Tokens after the first `n_emitted` that no later step can change."""
    if isinstance(event, GreedyStep):  # a chosen token is final
        token = int(event.tokens[0])
        return [] if token == cfg.eos_id else [token]
    if bool(event.done[0]):
        return []  # the final answer is emitted from the result
    alive = torch.cat([event.generated[event.rows[0]], event.tokens[0][:, None]], dim=1)
    live = torch.isfinite(event.beam_scores[0]).tolist()
    candidates = [row for row, ok in zip(alive.tolist(), live, strict=True) if ok]
    fin = event.finished
    for j, ok in enumerate(torch.isfinite(fin.scores[0]).tolist()):
        if ok:
            candidates.append(fin.tokens[0, j, : int(fin.lengths[0, j])].tolist())
    # The final answer is a finished hypothesis or grows from a live beam: their common prefix
    # is certain.
    return _common_prefix(candidates)[n_emitted:]


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    if not seqs:
        return []
    prefix = seqs[0]
    for seq in seqs[1:]:
        n = 0
        while n < min(len(prefix), len(seq)) and prefix[n] == seq[n]:
            n += 1
        prefix = prefix[:n]
    return prefix
