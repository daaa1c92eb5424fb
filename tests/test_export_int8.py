"""int8 dynamic quantization on every model family: it runs, it is close to float, it round-trips."""

from pathlib import Path

import pytest
import torch
from torch import nn

from treadmill.decoding import generate
from treadmill.export.int8 import load_int8, quantize_int8, save_int8
from treadmill.models.builders import forecaster, gpt, rnn_seq2seq, transformer_seq2seq
from treadmill.nn.attention import MultiHeadAttention


def _quantized_layers(model: nn.Module) -> int:
    return sum(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def _seq2seq_models() -> dict[str, nn.Module]:
    return {
        "transformer": transformer_seq2seq(30, 30, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2,
                                           d_ff=64, dropout=0.0),
        "rnn-lstm": rnn_seq2seq(30, 30, embed_dim=16, hidden_dim=32, cell="lstm", attention="bahdanau", dropout=0.0),
        "rnn-gru": rnn_seq2seq(30, 30, embed_dim=16, hidden_dim=32, cell="gru", attention="luong-general",
                               dropout=0.0),
    }


@pytest.mark.parametrize("name", ["transformer", "rnn-lstm", "rnn-gru"])
def test_int8_seq2seq_runs_close_to_float_and_decodes(name: str) -> None:
    model = _seq2seq_models()[name].eval()
    quantized = quantize_int8(model)
    assert _quantized_layers(quantized) >= 3
    src = torch.randint(4, 30, (3, 7))
    with torch.no_grad():
        ref, got = model(src, src[:, :5]), quantized(src, src[:, :5])
    assert got.shape == ref.shape
    # int8 weights: logits stay close (a few percent of their spread), not identical
    assert (got - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    out = generate(quantized, src, strategy="beam", beam_size=3, max_len=6)
    assert len(out.sequences) == 3 and all(len(seq) >= 1 for seq in out.sequences)
    assert _quantized_layers(model) == 0  # the float model is left as it was


def test_int8_gpt_and_forecaster() -> None:
    lm = gpt(40, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0).eval()
    q_lm = quantize_int8(lm)
    tokens = torch.randint(4, 40, (2, 9))
    with torch.no_grad():
        assert (q_lm(tokens) - lm(tokens)).abs().max() < 0.1 * lm(tokens).abs().max() + 0.05
    assert len(generate(q_lm, prompt=tokens, max_len=4, strategy="greedy").sequences) == 2
    fc = forecaster(12, 3, hidden_dim=16).eval()
    q_fc = quantize_int8(fc)
    assert isinstance(q_fc.gru, torch.ao.nn.quantized.dynamic.GRU)
    x = torch.randn(4, 12, 1)
    with torch.no_grad():
        assert q_fc(x).shape == fc(x).shape == (4, 3, 1)


def test_int8_cross_attention_matches_float_projections() -> None:
    """Cross-attention with a quantized in_proj slices the projection's output columns."""
    attn = MultiHeadAttention(16, 4).eval()
    quantized = quantize_int8(nn.Sequential(attn))[0]
    query, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        ref = attn(query, memory, use_cache=True)
        got = quantized(query, memory, use_cache=True)
        again = quantized(query[:, :1], memory, cache=got.cache)  # keys/values reused from the cache
    assert (got.output - ref.output).abs().max() < 0.05
    assert torch.equal(again.cache["k"], got.cache["k"])


def test_int8_save_load_round_trip(tmp_path: Path) -> None:
    model = _seq2seq_models()["transformer"].eval()
    quantized = quantize_int8(model)
    path = save_int8(quantized, tmp_path / "model.pt")
    fresh = transformer_seq2seq(30, 30, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
                                dropout=0.0)  # other random weights: all must come from the file
    loaded = load_int8(fresh, path)
    src = torch.randint(4, 30, (2, 6))
    with torch.no_grad():
        assert torch.equal(loaded(src, src), quantized(src, src))


def test_exports_shrink_a_model_to_a_quarter_int8_and_a_half_fp16(tmp_path: Path) -> None:
    from treadmill.export import export_model

    model = transformer_seq2seq(60, 60, d_model=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=512)
    int8 = export_model(model, "int8", tmp_path / "int8")
    fp16 = export_model(model, "fp16", tmp_path / "fp16")
    assert int8["float32_bytes"] == fp16["float32_bytes"] > 0
    # Linear weights are most of this model: int8 stores them in a byte each (embeddings stay float32)
    assert int8["size_bytes"] < 0.35 * int8["float32_bytes"]
    assert 0.45 * fp16["float32_bytes"] < fp16["size_bytes"] < 0.55 * fp16["float32_bytes"]
