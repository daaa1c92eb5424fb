"""stream(): tokens arrive incrementally, never get retracted, and join to generate()'s output."""

from __future__ import annotations

import pytest
import torch
from decoding_toy_models import EosBiased, ToyLM, ToySeq2Seq

from treadmill.constants import PAD_ID
from treadmill.decoding import generate, stream

VOCAB = 12


class CountingModel(EosBiased):
    """EosBiased that counts decode calls, to see when stream() yields."""

    calls = 0

    def decode(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().decode(*args, **kwargs)


def _model() -> CountingModel:
    torch.manual_seed(0)
    return CountingModel(ToySeq2Seq(VOCAB), bias=-3.0, slope=0.5)


def _sources(n: int = 6) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return [
        torch.randint(4, VOCAB, (1, int(k)), generator=gen)
        for k in torch.randint(2, 9, (n,), generator=gen)
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"strategy": "greedy"},
        {"strategy": "sample", "seed": 3, "top_p": 0.9},
        {"strategy": "beam", "beam_size": 4},
        {"strategy": "beam", "beam_size": 3, "early_stopping": False, "length_penalty": 0.0},
    ],
)
def test_stream_joins_to_generate(options: dict) -> None:
    model = _model()
    for src in _sources():
        expected = generate(model, src, max_len=15, **options).sequences[0]
        assert list(stream(model, src, max_len=15, **options)) == expected
    prefix = [7, 8]
    expected = generate(model, _sources()[0], max_len=15, prefix=prefix, **options).sequences[0]
    assert list(stream(model, _sources()[0], max_len=15, prefix=prefix, **options)) == expected


def test_greedy_stream_yields_one_token_per_model_call() -> None:
    model = _model()
    tokens = stream(model, _sources()[0], max_len=15)
    for i, _ in enumerate(tokens):
        assert model.calls == i + 1  # the token came out right after its own decode step


def test_beam_stream_yields_before_the_search_ends() -> None:
    early = []
    for src in _sources():
        model = _model()
        calls_at_yield = [
            model.calls for _ in stream(model, src, strategy="beam", beam_size=3, max_len=30)
        ]
        early.append(calls_at_yield[0] < model.calls)  # first token out before the last step
    # whether the beams agree early depends on the source; on some of these they do
    assert any(early)


def test_decoder_only_stream_and_errors() -> None:
    torch.manual_seed(0)
    lm = EosBiased(ToyLM(VOCAB), -3.0, 0.5)
    assert (
        list(stream(lm, prompt=[[4, 5]], max_len=10))
        == generate(lm, prompt=[[4, 5]], max_len=10).sequences[0]
    )
    with pytest.raises(ValueError, match="batch of one"):
        stream(_model(), torch.tensor([[4, 5], [6, PAD_ID]]))
    with pytest.raises(ValueError, match="one sequence"):
        stream(_model(), torch.tensor([[4]]), strategy="beam", num_return_sequences=2)


def test_stream_leaves_no_inference_mode_or_eval_mode_between_tokens() -> None:
    model = _model()
    model.train()
    for _ in stream(model, _sources()[0], max_len=5):
        assert not torch.is_inference_mode_enabled()
        assert model.training
