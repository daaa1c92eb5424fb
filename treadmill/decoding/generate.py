"""generate(): one entry point for greedy, beam and sampled decoding of any protocol model."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from treadmill.decoding.beam import beam_search
from treadmill.decoding.config import GenerationConfig, resolve_config
from treadmill.decoding.greedy import greedy_search
from treadmill.decoding.inputs import PreparedInputs, TokenBatch, prepare
from treadmill.decoding.output import GenerationOutput, SearchResult, build_output

T = TypeVar("T")


def generate(
    model: nn.Module,
    src: TokenBatch | None = None,
    src_padding_mask: Tensor | None = None,
    *,
    prompt: TokenBatch | None = None,
    prefix: Sequence[int] | Sequence[Sequence[int]] | None = None,
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> GenerationOutput:
    """Decode a batch with `config` (keyword overrides use GenerationConfig's field names).

    Encoder-decoder models take `src` (batch, src_len) long or a list of id lists (right-padded
    here); `src_padding_mask` defaults to `src == pad_id`. Decoder-only models take `prompt`
    (batch, T) LEFT-padded with PAD, or a list of id lists (left-padded here); the outputs exclude
    the prompt. `prefix` forces each output to start with the given ids (one list per input, or
    one flat list for all). Runs in eval mode under inference_mode; the model's mode is restored.
    """
    cfg = resolve_config(config, overrides)
    with evaluating(model):
        prepared = prepare(model, src, src_padding_mask, prompt, prefix, cfg)
        result = run_to_end(start_search(prepared, cfg))
    return build_output(
        result,
        src_padding_mask=prepared.src_padding_mask,
        pad_id=cfg.pad_id,
        return_scores=cfg.return_scores,
        return_attention=cfg.return_attention,
    )


def start_search(
    prepared: PreparedInputs, cfg: GenerationConfig
) -> Generator[Any, None, SearchResult]:
    """The search generator for cfg.strategy (yields per-step states, returns a SearchResult)."""
    if cfg.strategy == "beam":
        return beam_search(prepared.stepper, prepared.limits, cfg)
    generator = None
    if cfg.strategy == "sample":
        # A private generator: sampling never reads or advances the global RNG state.
        generator = torch.Generator(device=prepared.stepper.tokens.device)
        if cfg.seed is None:
            generator.seed()
        else:
            generator.manual_seed(cfg.seed)
    return greedy_search(prepared.stepper, prepared.limits, cfg, generator)


def run_to_end(search: Generator[Any, None, T]) -> T:
    """Drive a search generator to its end and return its return value."""
    while True:
        try:
            next(search)
        except StopIteration as stop:
            return stop.value


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and torch.inference_mode inside the block; the previous train/eval mode after."""
    was_training = model.training
    if was_training:  # train()/eval() walk every submodule: skip it when already in eval mode
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()
