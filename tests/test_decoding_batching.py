"""Batch-composition independence and cache equivalence, on the toy and the real models.

A source must decode to the same tokens alone or inside a padded batch of 32 with random lengths,
and decoding with the cache must equal decoding without it (random-init models are fine: the
claims are about the search, not about quality).
"""

from __future__ import annotations

import pytest
import torch
from decoding_toy_models import EosBiased, ToyLM, ToySeq2Seq

from treadmill.constants import PAD_ID
from treadmill.decoding import generate
from treadmill.models import (
    GPT,
    GPTConfig,
    rnn_seq2seq,
    transformer_seq2seq,
)

VOCAB = 16
BATCH = 32
MAX_LEN = 12
STRATEGIES = [
    pytest.param({"strategy": "greedy"}, id="greedy"),
    pytest.param({"strategy": "beam", "beam_size": 4, "length_penalty": 0.6}, id="beam4"),
]


def _seq2seq(kind: str) -> EosBiased:
    torch.manual_seed(0)
    if kind == "toy":
        base = ToySeq2Seq(VOCAB)
    elif kind == "transformer":
        base = transformer_seq2seq(
            VOCAB,
            VOCAB,
            d_model=32,
            n_heads=4,
            n_encoder_layers=2,
            n_decoder_layers=2,
            d_ff=64,
            dropout=0.1,
        )
    elif kind == "rnn-lstm-bahdanau":
        base = rnn_seq2seq(
            VOCAB, VOCAB, embed_dim=16, hidden_dim=32, cell="lstm", attention="bahdanau"
        )
    else:
        base = rnn_seq2seq(
            VOCAB,
            VOCAB,
            embed_dim=16,
            hidden_dim=32,
            cell="gru",
            attention="luong-general",
            n_layers=2,
        )
    _sharpen(base)
    # Dropout > 0 in the models checks that generate() switches to eval mode.
    base.train()
    # EOS grows likelier with the position, so outputs end at varied lengths inside MAX_LEN.
    return EosBiased(
        base,
        bias=-4.0,
        slope=0.6,
        by_last_token=kind != "toy",
    )


def _sharpen(model: torch.nn.Module) -> None:
    """Scale every weight by 3: random-init decoders otherwise repeat one token for any source."""
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(3.0)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 15, (BATCH,), generator=gen)
    src = torch.randint(4, VOCAB, (BATCH, int(lengths.max())), generator=gen)
    mask = torch.arange(src.size(1))[None, :] >= lengths[:, None]
    return src.masked_fill(mask, PAD_ID), mask, lengths.tolist()


@pytest.mark.parametrize("kind", ["toy", "transformer", "rnn-lstm-bahdanau", "rnn-gru-luong"])
@pytest.mark.parametrize("options", STRATEGIES)
def test_seq2seq_batched_equals_one_by_one_and_cache_equals_no_cache(
    kind: str, options: dict
) -> None:
    model = _seq2seq(kind)
    src, mask, lengths = _batch()
    batched = generate(model, src, mask, max_len=MAX_LEN, return_scores=True, **options)
    # the batch really mixes output lengths and contents
    assert len({len(s) for s in batched.sequences}) > 2
    assert len({tuple(s) for s in batched.sequences}) > 5
    for i, n in enumerate(lengths):
        alone = generate(model, src[i : i + 1, :n], max_len=MAX_LEN, return_scores=True, **options)
        assert alone.sequences[0] == batched.sequences[i], f"source {i} (length {n})"
        assert torch.allclose(alone.scores[0], batched.scores[i], atol=1e-3)
    uncached = generate(
        model, src, mask, max_len=MAX_LEN, use_cache=False, return_scores=True, **options
    )
    assert uncached.sequences == batched.sequences
    assert torch.allclose(uncached.scores, batched.scores, atol=1e-3)
    assert model.training  # the caller's mode is restored


@pytest.mark.parametrize("kind", ["toy", "gpt"])
@pytest.mark.parametrize("options", STRATEGIES)
def test_decoder_only_left_padded_batch_equals_one_by_one(kind: str, options: dict) -> None:
    torch.manual_seed(0)
    if kind == "toy":
        base = ToyLM(VOCAB)
    else:
        base = GPT(
            GPTConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64)
        )
    _sharpen(base)
    model = EosBiased(
        base,
        bias=-4.0,
        slope=0.6,
        by_last_token=kind != "toy",
    )
    _, _, lengths = _batch(seed=1)
    gen = torch.Generator().manual_seed(2)
    prompts = [torch.randint(4, VOCAB, (n,), generator=gen).tolist() for n in lengths]
    batched = generate(model, prompt=prompts, max_len=MAX_LEN, return_scores=True, **options)
    assert len({len(s) for s in batched.sequences}) > 2
    assert len({tuple(s) for s in batched.sequences}) > 5
    for i, prompt in enumerate(prompts):
        alone = generate(model, prompt=[prompt], max_len=MAX_LEN, return_scores=True, **options)
        assert alone.sequences[0] == batched.sequences[i], f"prompt {i} (length {len(prompt)})"
        assert torch.allclose(alone.scores[0], batched.scores[i], atol=1e-3)
    uncached = generate(model, prompt=prompts, max_len=MAX_LEN, use_cache=False, **options)
    assert uncached.sequences == batched.sequences


def test_sampling_cache_equals_no_cache_on_a_real_model() -> None:
    model = _seq2seq("transformer")
    src, mask, _ = _batch()
    options = {
        "strategy": "sample",
        "seed": 5,
        "top_p": 0.9,
        "temperature": 0.8,
        "max_len": MAX_LEN,
    }
    cached = generate(model, src, mask, **options)
    uncached = generate(model, src, mask, use_cache=False, **options)
    assert cached.sequences == uncached.sequences


@pytest.mark.parametrize("kind", ["transformer", "rnn-lstm-bahdanau"])
def test_real_model_attention_is_a_distribution_over_the_real_source(kind: str) -> None:
    model = _seq2seq(kind)
    src, mask, lengths = _batch()
    for strategy in ("greedy", "beam"):
        out = generate(
            model, src[:6], mask[:6], strategy=strategy, max_len=MAX_LEN, return_attention=True
        )
        for b, seq in enumerate(out.sequences):
            assert out.attention[b].shape == (len(seq), lengths[b])
            assert torch.allclose(out.attention[b].sum(-1), torch.ones(len(seq)), atol=1e-5)
