"""The seq2seq page's work: decode one text into n-best hypotheses and draw the best one's attention."""

from __future__ import annotations

from typing import Any

import torch

from treadmill.constants import PAD_ID
from treadmill.serve.servable import Servable, input_problem

__all__ = ["decoding_options", "n_best", "attention_picture"]


def decoding_options(servable: Servable, strategy: str, beam_size: int, n_best: int, temperature: float,
                     top_k: int, top_p: float) -> dict[str, Any]:
    """The run's decoding settings with the page's controls over them (other strategies' fields dropped)."""
    from treadmill.decoding.config import strategy_only_fields

    options = {k: v for k, v in servable.generation.items() if k not in strategy_only_fields(exclude=strategy)}
    options["strategy"] = strategy
    if strategy == "beam":
        options["beam_size"] = int(beam_size)
        options["num_return_sequences"] = max(1, min(int(n_best), int(beam_size)))
    elif strategy == "sample":
        options.update(temperature=float(temperature), top_k=int(top_k) or None, top_p=float(top_p),
                       num_return_sequences=max(1, int(n_best)))
    else:
        options["num_return_sequences"] = 1
    return options


def n_best(servable: Servable, text: str, options: dict[str, Any]) -> tuple[list[tuple[str, float]], list[int]]:
    """([(hypothesis, score)] best first, the best hypothesis's ids) for `text`, decoded as `generate` does."""
    from treadmill.seq2seq.evaluation import generate_for_batch

    assert servable.encode is not None
    problem = input_problem(servable, text)
    if problem:
        raise ValueError(problem)
    src = torch.tensor([servable.encode(text)])
    output = generate_for_batch(servable.model, {"src": src, "src_padding_mask": src == PAD_ID},
                                **{**options, "return_scores": True})
    n = int(options.get("num_return_sequences", 1))
    assert output.scores is not None  # return_scores=True
    sequences: Any = output.sequences[0] if n > 1 else [output.sequences[0]]
    scores = output.scores[0].tolist() if n > 1 else [float(output.scores[0])]
    hypotheses = [(servable.tgt_tokenizer.decode(ids), float(score)) for ids, score in zip(sequences, scores, strict=True)]
    return hypotheses, list(sequences[0])


def attention_picture(servable: Servable, text: str, output: list[int]) -> Any:
    """A Figure of the last decoder layer's attention (heads averaged) while producing `output`."""
    from treadmill.data.tokenizers import token_names
    from treadmill.plots import attention_figure
    from treadmill.seq2seq.attention_maps import attention_maps

    assert servable.encode is not None
    maps = attention_maps(servable.model, servable.encode(text), output)
    tokenizers = {"src": servable.src_tokenizer, "tgt": servable.tgt_tokenizer}
    rows = [token_names(tokenizers[side], [i])[0] for i, side in zip(maps.row_ids, maps.row_sides, strict=True)]
    cols = [token_names(tokenizers[side], [i])[0] for i, side in zip(maps.col_ids, maps.col_sides, strict=True)]
    cross = maps.kind == "cross"
    labels = ("source", "output") if cross else ("attended position", "query position")
    title = f"{'cross' if cross else 'self'}-attention, last layer, mean of {maps.n_heads} heads"
    return attention_figure(maps.weights[-1].mean(0), cols, rows, title, *labels)
