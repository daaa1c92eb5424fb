"""Models built from their config object and by the builders: same weights as before, presets, aliases."""

from collections.abc import Callable

import pytest
import torch
from torch import nn

from treadmill.models import (
    CONFIG_ALIASES,
    GPT,
    Forecaster,
    ForecasterConfig,
    GPTConfig,
    RNNSeq2Seq,
    RNNSeq2SeqConfig,
    TransformerSeq2Seq,
    TransformerSeq2SeqConfig,
    build_model,
    canonical_config,
    forecaster,
    gpt,
    gpt_base,
    gpt_small,
    rnn_seq2seq,
    rnn_seq2seq_base,
    rnn_seq2seq_small,
    transformer_seq2seq,
    transformer_seq2seq_base,
    transformer_seq2seq_small,
    transformer_seq2seq_tiny,
)

# Fingerprints of the seed-0 weights, recorded on main before models took their config object
# (TransformerSeq2Seq(37, 41, d_model=32, ...) then): parameter creation order and
# initialisation must not change, or trained recipes would stop reproducing their metrics.
REFERENCE: dict[str, tuple[Callable[[], nn.Module], float]] = {
    "transformer": (
        lambda: transformer_seq2seq(
            37, 41, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64
        ),
        23294.368602064555,
    ),
    "transformer_rope_shared": (
        lambda: TransformerSeq2Seq(
            TransformerSeq2SeqConfig(
                40, 40, d_model=32, n_heads=2, d_ff=48, positional="rope", share_vocab=True,
                tie_embeddings=False, norm_first=False, layer_scale_init=0.1,
            )
        ),
        48008.062036903044,
    ),  # fmt: skip
    "transformer_learned": (
        lambda: transformer_seq2seq(
            30, 20, d_model=24, n_heads=3, n_encoder_layers=1, n_decoder_layers=2, d_ff=40,
            positional="learned", max_len=64, activation="gelu",
        ),
        13308.467029332925,
    ),  # fmt: skip
    "rnn_lstm_bahdanau": (
        lambda: rnn_seq2seq(
            37, 41, embed_dim=16, hidden_dim=32, n_layers=2, cell="lstm", attention="bahdanau"
        ),
        1162.7900113661383,
    ),
    "rnn_gru_luong": (
        lambda: RNNSeq2Seq(
            RNNSeq2SeqConfig(37, 41, 16, 32, n_layers=1, cell="gru", attention="luong-general")
        ),
        -117.4698506509595,
    ),
    "rnn_lstm_none_uni": (
        lambda: build_model(
            "rnn",
            {"src_vocab_size": 37, "tgt_vocab_size": 41, "embed_dim": 8, "hidden_dim": 24,
             "num_layers": 2, "bidirectional_encoder": False},
        ),
        534.1145543474614,
    ),  # fmt: skip
    "forecaster": (
        lambda: forecaster(12, 4, hidden_dim=8, n_layers=2),
        24.353399490403728,
    ),
    "gpt": (
        lambda: gpt(33, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=32),
        4748.369921211678,
    ),
}


def _fingerprint(model: nn.Module) -> float:
    """Order- and position-sensitive sum of the state dict: sum_i (i + 1) * <p_i, linspace(1, 2)>."""
    total = 0.0
    for i, tensor in enumerate(model.state_dict().values()):
        flat = tensor.detach().double().flatten()
        weights = torch.linspace(1.0, 2.0, flat.numel(), dtype=torch.float64)
        total += (i + 1) * float(flat @ weights)
    return total


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_seed_zero_weights_match_the_reference_recorded_before_the_change(name: str) -> None:
    build, expected = REFERENCE[name]
    torch.manual_seed(0)
    assert _fingerprint(build()) == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_builders_and_config_constructor_draw_the_same_weights() -> None:
    torch.manual_seed(0)
    built = transformer_seq2seq_tiny(20, 20, dropout=0.0)
    torch.manual_seed(0)
    direct = TransformerSeq2Seq(
        TransformerSeq2SeqConfig(
            20, 20, d_model=64, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=256,
            dropout=0.0,
        )
    )  # fmt: skip
    assert built.config == direct.config
    for (name, a), (_, b) in zip(built.state_dict().items(), direct.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "build,expected",
    [
        (lambda: transformer_seq2seq_tiny(8000, 8000), 1_257_728),
        (lambda: transformer_seq2seq_small(8000, 8000), 9_626_624),
        (lambda: transformer_seq2seq_base(8000, 8000), 52_332_544),
        (lambda: rnn_seq2seq_small(8000, 8000), 3_935_296),
        (lambda: rnn_seq2seq_base(8000, 8000), 17_131_328),
        (lambda: gpt_small(8000), 5_469_696),
        (lambda: gpt_base(8000), 91_986_432),
    ],
)
def test_preset_parameter_counts_are_the_documented_ones(
    build: Callable[[], nn.Module], expected: int
) -> None:
    assert sum(p.numel() for p in build().parameters()) == expected


def test_presets_take_overrides_and_return_the_family() -> None:
    model = transformer_seq2seq_small(10, 12, d_model=128, dropout=0.0)
    assert isinstance(model, TransformerSeq2Seq)
    assert (model.config.d_model, model.config.n_encoder_layers, model.config.dropout) == (128, 3, 0.0)
    rnn = rnn_seq2seq_small(10, 12, cell="lstm")
    assert isinstance(rnn, RNNSeq2Seq) and rnn.config.cell == "lstm"
    assert rnn.config.attention == "luong-general"
    assert isinstance(gpt_small(10, n_layers=1), GPT)


def test_constructors_take_only_their_config() -> None:
    with pytest.raises(TypeError, match="transformer_seq2seq"):
        TransformerSeq2Seq(10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rnn_seq2seq"):
        RNNSeq2Seq({"src_vocab_size": 10, "tgt_vocab_size": 10})  # type: ignore[arg-type]
    config = GPTConfig(11, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    assert GPT(config).config is config
    fc = ForecasterConfig(context_len=6, horizon=2, n_layers=1)
    assert Forecaster(fc).gru.num_layers == 1


def test_old_key_names_load_with_the_canonical_name_winning() -> None:
    assert CONFIG_ALIASES["rnn"] == {"num_layers": "n_layers"}
    assert CONFIG_ALIASES["forecaster"] == {"num_layers": "n_layers"}
    old = build_model("rnn", {"src_vocab_size": 5, "tgt_vocab_size": 6, "num_layers": 2})
    assert isinstance(old, RNNSeq2Seq) and old.config.n_layers == 2
    both = canonical_config("rnn", {"num_layers": 3, "n_layers": 2, "cell": "gru"})
    assert both == {"n_layers": 2, "cell": "gru"}
    fc = build_model("forecaster", {"context_len": 12, "horizon": 4, "num_layers": 1})
    assert isinstance(fc, Forecaster) and fc.config.n_layers == 1
    # an alias of another family is still an unknown key there
    with pytest.raises(ValueError, match="Did you mean 'n_layers'"):
        build_model("gpt", {"vocab_size": 5, "num_layers": 1})
    with pytest.raises(ValueError, match="Did you mean 'rnn'"):
        canonical_config("rnm", {})
