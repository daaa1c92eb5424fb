"""Blocks: feed-forward, norms, positions, Transformer blocks vs torch's layers, pooling."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from treadmill.nn import (
    AttentionPooling,
    Decoder,
    FeedForward,
    LatentQueryEncoder,
    LayerScale,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    RMSNorm,
    SinusoidalPositionalEncoding,
    build_norm,
    decoder_block,
    encoder_block,
)

D_MODEL, N_HEADS, D_FF = 16, 4, 32


def _copy_attention(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    ours.in_proj.weight.copy_(ref.in_proj_weight)
    ours.in_proj.bias.copy_(ref.in_proj_bias)
    ours.out_proj.load_state_dict(ref.out_proj.state_dict())


def _copy_ff(ours: FeedForward, linear1: nn.Linear, linear2: nn.Linear) -> None:
    ours.w1.load_state_dict(linear1.state_dict())
    ours.w2.load_state_dict(linear2.state_dict())


def _randomize_norms(module: nn.Module) -> None:
    # default LayerNorm weights are 1/0: randomise so a swapped norm would be caught
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.normal_(1.0, 0.2)
            m.bias.normal_(0.0, 0.2)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@torch.no_grad()
def test_encoder_block_matches_torch_encoder_layer(norm_first: bool, activation: str) -> None:
    ref = nn.TransformerEncoderLayer(
        D_MODEL,
        N_HEADS,
        D_FF,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
    ).eval()
    _randomize_norms(ref)
    ours = encoder_block(D_MODEL, N_HEADS, D_FF, 0.0, activation, norm_first).eval()
    _copy_attention(ours.self_attn, ref.self_attn)
    _copy_ff(ours.feed_forward, ref.linear1, ref.linear2)
    ours.attn_residual.norm.load_state_dict(ref.norm1.state_dict())
    ours.ff_residual.norm.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(3, 6, D_MODEL)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[1, 4:] = True
    torch.testing.assert_close(ours(x, pad), ref(x, src_key_padding_mask=pad), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
@torch.no_grad()
def test_decoder_block_matches_torch_decoder_layer(norm_first: bool) -> None:
    ref = nn.TransformerDecoderLayer(
        D_MODEL, N_HEADS, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    _randomize_norms(ref)
    ours = decoder_block(D_MODEL, N_HEADS, D_FF, 0.0, "relu", norm_first).eval()
    _copy_attention(ours.self_attn, ref.self_attn)
    assert ours.cross_attn is not None and ours.cross_residual is not None
    _copy_attention(ours.cross_attn, ref.multihead_attn)
    _copy_ff(ours.feed_forward, ref.linear1, ref.linear2)
    ours.self_residual.norm.load_state_dict(ref.norm1.state_dict())
    ours.cross_residual.norm.load_state_dict(ref.norm2.state_dict())
    ours.ff_residual.norm.load_state_dict(ref.norm3.state_dict())
    x, memory = torch.randn(2, 5, D_MODEL), torch.randn(2, 7, D_MODEL)
    mem_pad = torch.zeros(2, 7, dtype=torch.bool)
    mem_pad[0, 5:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    expected = ref(x, memory, tgt_mask=causal, memory_key_padding_mask=mem_pad, tgt_is_causal=True)
    got, cache, weights = ours(x, memory, memory_padding_mask=mem_pad)
    assert cache is None and weights is None
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_decoder_stack_cached_equals_full() -> None:
    decoder = Decoder(
        [decoder_block(D_MODEL, N_HEADS, D_FF, 0.0, "swiglu", norm="rmsnorm") for _ in range(2)],
        nn.LayerNorm(D_MODEL),
    ).eval()
    x, memory = torch.randn(2, 6, D_MODEL), torch.randn(2, 4, D_MODEL)
    full = decoder(x, memory).hidden
    cache, steps = None, []
    for t in range(6):
        out = decoder(x[:, t : t + 1], memory, cache=cache, use_cache=True, need_weights=True)
        assert out.weights is not None and out.weights.shape == (2, 1, 4)
        steps.append(out.hidden)
        cache = out.cache
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_layer_scale_zero_makes_pre_norm_block_identity() -> None:
    block = encoder_block(D_MODEL, N_HEADS, D_FF, 0.0, layer_scale_init=0.0).eval()
    x = torch.randn(2, 5, D_MODEL)
    torch.testing.assert_close(block(x), x, atol=0, rtol=0)
    small = encoder_block(D_MODEL, N_HEADS, D_FF, 0.0, layer_scale_init=1e-4).eval()
    assert 0 < (small(x) - x).abs().max() < 1e-2
    scale = LayerScale(4, 0.5)
    assert torch.equal(scale(torch.ones(2, 4)), torch.full((2, 4), 0.5))


@pytest.mark.parametrize("activation", ["relu", "gelu", "swiglu"])
@torch.no_grad()
def test_feed_forward_formulas(activation: str) -> None:
    ff = FeedForward(D_MODEL, D_FF, activation).eval()
    x = torch.randn(3, D_MODEL)
    h = x @ ff.w1.weight.T + ff.w1.bias
    if activation == "relu":
        h = h.clamp(min=0)
    elif activation == "gelu":
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    else:
        gate, up = h[:, :D_FF], h[:, D_FF:]
        h = gate * torch.sigmoid(gate) * up
    torch.testing.assert_close(ff(x), h @ ff.w2.weight.T + ff.w2.bias, atol=1e-5, rtol=1e-5)
    width = 2 * D_FF if activation == "swiglu" else D_FF
    assert (
        sum(p.numel() for p in ff.parameters())
        == D_MODEL * width + width + D_FF * D_MODEL + D_MODEL
    )
    with pytest.raises(ValueError, match="activation"):
        FeedForward(D_MODEL, D_FF, "tanh")


@torch.no_grad()
def test_rms_norm_formula_and_builder() -> None:
    norm = RMSNorm(D_MODEL, eps=1e-6)
    norm.weight.normal_()
    x = torch.randn(4, D_MODEL)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)
    assert isinstance(build_norm("layernorm", 8), nn.LayerNorm)
    assert isinstance(build_norm("rmsnorm", 8), RMSNorm)
    with pytest.raises(ValueError, match="batchnorm"):
        build_norm("batchnorm", 8)


def test_sinusoidal_values_and_max_len() -> None:
    pe = SinusoidalPositionalEncoding(8, max_len=16)
    row = pe(torch.tensor([3]))[0]
    i = torch.arange(4).float()
    angle = 3 / 10000 ** (2 * i / 8)
    torch.testing.assert_close(row[0::2], torch.sin(angle))
    torch.testing.assert_close(row[1::2], torch.cos(angle))
    assert pe(torch.arange(4).expand(2, 4)).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="max_len=16"):
        pe(torch.tensor([16]))
    learned = LearnedPositionalEmbedding(8, max_len=4)
    assert torch.equal(learned(torch.tensor([2])), learned.embedding.weight[2:3])
    with pytest.raises(ValueError, match="max_len=4"):
        learned(torch.tensor([4]))


@torch.no_grad()
def test_attention_pooling_is_masked_softmax_average() -> None:
    pool = AttentionPooling(D_MODEL, n_heads=1).eval()
    x = torch.randn(2, 5, D_MODEL)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    pooled, weights = pool(x, pad, need_weights=True)
    assert pooled.shape == (2, D_MODEL)
    assert torch.equal(weights[1, 3:], torch.zeros(2))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    # by hand: softmax(q k^T / sqrt(d)) over real keys, then values and out-projection
    attn = pool.attention
    q = F.linear(pool.query[0], attn.in_proj.weight[:D_MODEL], attn.in_proj.bias[:D_MODEL])
    k = F.linear(
        x[1, :3],
        attn.in_proj.weight[D_MODEL : 2 * D_MODEL],
        attn.in_proj.bias[D_MODEL : 2 * D_MODEL],
    )
    v = F.linear(x[1, :3], attn.in_proj.weight[2 * D_MODEL :], attn.in_proj.bias[2 * D_MODEL :])
    w = torch.softmax(q @ k.T / math.sqrt(D_MODEL), dim=-1)
    torch.testing.assert_close(pooled[1], attn.out_proj(w @ v)[0], atol=1e-5, rtol=1e-5)
    x2 = x.clone()
    x2[1, 3:] = 50.0
    torch.testing.assert_close(pool(x2, pad), pooled, atol=1e-6, rtol=0)


@torch.no_grad()
def test_latent_query_encoder_is_a_set_function() -> None:
    enc = LatentQueryEncoder(
        D_MODEL, n_latents=3, n_heads=N_HEADS, n_layers=2, layer_scale_init=0.1
    ).eval()
    x = torch.randn(2, 6, D_MODEL)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, 4:] = True
    out = enc(x, pad)
    assert out.shape == (2, 3, D_MODEL)
    # no positions: permuting the set members does not change the latents
    perm = torch.tensor([3, 0, 2, 1, 4, 5])  # keeps row 0's pads at the end
    torch.testing.assert_close(enc(x[:, perm], pad[:, perm]), out, atol=1e-5, rtol=1e-5)
    # padded members are ignored
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, D_MODEL) * 10
    torch.testing.assert_close(enc(x2, pad), out, atol=1e-5, rtol=1e-5)
    # RMSNorm at the end: each latent has unit root-mean-square (times the unit weight)
    torch.testing.assert_close(out.pow(2).mean(-1), torch.ones(2, 3), atol=1e-3, rtol=1e-3)
