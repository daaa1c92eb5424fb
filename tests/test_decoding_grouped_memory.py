"""Grouped memory: beam search keeps one memory row per source for models that accept it.

TransformerSeq2Seq sets `accepts_grouped_memory`; its beam search must then give the same
hypotheses as with memory repeated per beam (the path every other model takes), with scores
equal to float tolerance (the cross-attention runs on other shapes, so the last bits differ).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from treadmill.constants import PAD_ID
from treadmill.decoding import generate
from treadmill.decoding.stepper import ModelStepper
from treadmill.models import transformer_seq2seq
from treadmill.nn import MultiHeadAttention

VOCAB = 16


class Ungrouped(nn.Module):
    """The same model without `accepts_grouped_memory`: memory is repeated per beam."""

    is_encoder_decoder = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def encode(self, *args: Any) -> Any:
        """The wrapped model's memory."""
        return self.model.encode(*args)

    def decode(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """The wrapped model's decode."""
        return self.model.decode(*args, **kwargs)


def _model(**fields: Any) -> nn.Module:
    torch.manual_seed(0)
    model = transformer_seq2seq(
        VOCAB, VOCAB, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
        **fields,
    )
    with torch.no_grad():  # sharper logits: random-init decoders otherwise repeat one token
        for param in model.parameters():
            param.mul_(2.0)
    return model.eval()


def _batch(seed: int = 0, batch: int = 9) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 12, (batch,), generator=gen)
    src = torch.randint(4, VOCAB, (batch, int(lengths.max())), generator=gen)
    mask = torch.arange(src.size(1))[None, :] >= lengths[:, None]
    return src.masked_fill(mask, PAD_ID), mask


OPTIONS = [
    pytest.param({"length_penalty": 0.6}, id="gnmt"),
    pytest.param({"early_stopping": True}, id="early-stopping"),
    pytest.param({"num_return_sequences": 3, "beam_size": 5}, id="n3"),
    pytest.param({"min_len": 3, "no_repeat_ngram_size": 2}, id="min-len-ngram"),
    pytest.param({"return_attention": True}, id="attention"),
]


@pytest.mark.parametrize("fields", [{}, {"norm_first": False, "positional": "learned"}])
@pytest.mark.parametrize("options", OPTIONS)
def test_grouped_beam_search_equals_repeated_memory(fields: dict, options: dict) -> None:
    model = _model(**fields)
    src, mask = _batch()
    kwargs = {"strategy": "beam", "beam_size": 4, "max_len": 10, "return_scores": True, **options}
    grouped = generate(model, src, mask, **kwargs)
    repeated = generate(Ungrouped(model), src, mask, **kwargs)
    assert grouped.sequences == repeated.sequences
    assert grouped.scores is not None and repeated.scores is not None
    torch.testing.assert_close(grouped.scores, repeated.scores, rtol=1e-5, atol=1e-5)
    if options.get("return_attention"):
        assert grouped.attention is not None and repeated.attention is not None
        for a, b in zip(grouped.attention, repeated.attention, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@torch.inference_mode()
def test_stepper_keeps_one_memory_row_per_source_and_drops_whole_sources() -> None:
    model = _model()
    src, mask = _batch(batch=3)
    stepper = ModelStepper(
        model, torch.full((3, 1), 1), memory=model.encode(src, mask), src_padding_mask=mask
    )
    stepper.repeat_rows(4, share_sources=True)
    assert stepper.rows == 12 and stepper.group == 4
    assert stepper.memory["outputs"].size(0) == 3 and stepper.src_padding_mask.size(0) == 3
    stepper.step()
    assert stepper.cache[0]["cross"]["k"].size(0) == 3  # projected once per source
    assert stepper.cache[0]["self"]["k"].size(0) == 12
    # Keep sources 0 and 2 (beams reordered inside each): memory and cross cache follow them.
    rows = torch.tensor([1, 0, 3, 3, 8, 9, 11, 10])
    cross_before = stepper.cache[0]["cross"]["k"]
    stepper.select(rows)
    assert torch.equal(stepper.src_padding_mask, mask[[0, 2]])
    assert torch.equal(stepper.cache[0]["cross"]["k"], cross_before[[0, 2]])
    # Self-attention keys are reordered lazily, in the copy that appends the next position.
    assert torch.equal(stepper.cache[0]["self"]["order"], rows)
    self_before = stepper.cache[0]["self"]["k"]
    stepper.append(torch.full((8,), 5))
    stepper.step()
    assert torch.equal(stepper.cache[0]["self"]["k"][:, :, :1], self_before[rows])


def test_sampling_repeats_memory_even_for_a_grouping_model() -> None:
    model = _model()
    src, mask = _batch(batch=2)
    stepper = ModelStepper(
        model, torch.full((2, 1), 1), memory=model.encode(src, mask), src_padding_mask=mask
    )
    stepper.repeat_rows(3)  # greedy/sampling drop single rows: no grouping
    assert stepper.group == 1 and stepper.memory["outputs"].size(0) == 6


def test_grouped_queries_equal_repeated_keys_and_reject_bad_shapes() -> None:
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4).eval()
    query, memory = torch.randn(6, 2, 16), torch.randn(2, 5, 16)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    grouped = attn(query, memory, key_padding_mask=pad, need_weights=True)
    repeated = attn(
        query,
        memory.repeat_interleave(3, 0),
        key_padding_mask=pad.repeat_interleave(3, 0),
        need_weights=True,
    )
    torch.testing.assert_close(grouped.output, repeated.output)
    torch.testing.assert_close(grouped.weights, repeated.weights)
    assert grouped.weights is not None and bool((grouped.weights[3:, :, 3:] == 0).all())
    fused = attn(query, memory, key_padding_mask=pad).output  # SDPA path, no weights
    torch.testing.assert_close(fused, repeated.output)
    with pytest.raises(ValueError, match="multiple of them"):
        attn(torch.randn(5, 2, 16), memory)


@pytest.mark.parametrize("inference", [True, False], ids=["fused-copy", "autograd-fallback"])
@pytest.mark.parametrize("positional", ["sinusoidal", "rope"])
def test_lazily_reordered_cache_equals_the_reordered_batch(positional: str, inference: bool) -> None:
    model = _model(positional=positional)
    src, mask = _batch(batch=4)
    tgt = torch.randint(4, VOCAB, (4, 5), generator=torch.Generator().manual_seed(1))
    order = torch.tensor([2, 0, 0, 3])
    with torch.inference_mode(inference):
        memory = model.encode(src, mask)
        _, cache = model.decode(tgt[:, :3], memory, mask)
        cache = model.select_cache(cache, order, order)
        swap = torch.tensor([0, 1, 3, 2])
        cache = model.select_cache(cache, swap, swap)  # composes with the first order
        order = order[swap]
        logits, grown = model.decode(tgt[order, :4], memory, mask[order], cache)
        expected = model(src[order], tgt[order, :4], mask[order])[:, -1:]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert "order" not in grown[0]["self"] and grown[0]["self"]["k"].shape[:3] == (4, 4, 4)
