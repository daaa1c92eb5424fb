"""The language-model page's work: a prompt's continuation, streamed as text while it is generated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from treadmill.constants import BOS_ID
from treadmill.serve.servable import Servable, input_problem

__all__ = ["sampling_options", "stream_text"]


def sampling_options(servable: Servable, strategy: str, temperature: float, top_k: int, top_p: float,
                     max_new_tokens: int, seed: int | None) -> dict[str, Any]:
    """The run's decoding settings with the page's sampling controls over them (one sequence)."""
    from treadmill.decoding.config import strategy_only_fields

    options = {k: v for k, v in servable.generation.items() if k not in strategy_only_fields(exclude=strategy)}
    options.update(strategy=strategy, max_len=int(max_new_tokens), num_return_sequences=1)
    options.pop("return_scores", None)
    if strategy == "sample":
        options.update(temperature=float(temperature), top_k=int(top_k) or None, top_p=float(top_p),
                       seed=None if seed is None or seed < 0 else int(seed))
    return options


def stream_text(servable: Servable, prompt: str, options: dict[str, Any]) -> Iterator[str]:
    """The continuation of `prompt` so far, once per generated token (through `decoding.stream`)."""
    from treadmill.decoding.stream import stream

    assert servable.encode is not None
    problem = input_problem(servable, prompt)
    if problem:
        raise ValueError(problem)
    # A decoder-only run reads its source, then the target's BOS (seq2seq.evaluation's layout).
    ids = [*servable.encode(prompt), BOS_ID]
    tokens: list[int] = []
    for token in stream(servable.model, prompt=[ids], **options):
        tokens.append(token)
        if servable.token_delay:
            time.sleep(servable.token_delay)
        yield servable.tgt_tokenizer.decode(tokens)
