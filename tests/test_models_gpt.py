"""GPT: causality, cached == full, left-padded prompts, prefix-LM, GPT-2 init, count, bf16 step."""

import math

import pytest
import torch
import torch.nn.functional as F

from treadmill.constants import PAD_ID
from treadmill.models import GPT, DecoderOnlyModel, GPTConfig, build_model

V, D, H, FF, L = 29, 16, 4, 32, 2
POSITIONALS = ["learned", "sinusoidal", "rope"]


def _model(**kw) -> GPT:
    args = dict(d_model=D, n_heads=H, n_layers=L, d_ff=FF, max_len=32)
    args.update(kw)
    return GPT(GPTConfig(V, **args)).eval()


def _tokens(batch: int = 2, length: int = 7) -> torch.Tensor:
    return torch.randint(4, V, (batch, length))


def _bump(tokens: torch.Tensor, j: int) -> torch.Tensor:
    out = tokens.clone()
    out[:, j] = (out[:, j] - 4 + 1) % (V - 4) + 4
    return out


def test_implements_the_protocol() -> None:
    model = _model()
    assert isinstance(model, DecoderOnlyModel) and not model.is_encoder_decoder


@pytest.mark.parametrize("positional", POSITIONALS)
@torch.no_grad()
def test_changing_token_j_never_changes_earlier_logits(positional: str) -> None:
    model = _model(positional=positional)
    tokens = _tokens()
    base = model(tokens)
    for j in range(1, tokens.shape[1]):
        out = model(_bump(tokens, j))
        torch.testing.assert_close(out[:, :j], base[:, :j], atol=1e-6, rtol=0)
        assert (out[:, j] - base[:, j]).abs().max() > 1e-5


@pytest.mark.parametrize("n_prefix", [2, 4])
@torch.no_grad()
def test_prefix_lm_semantics_by_perturbation(n_prefix: int) -> None:
    model = _model(prefix_len=n_prefix)
    tokens = _tokens(1, 7)
    base = model(tokens)
    for j in range(tokens.shape[1]):
        changed = (model(_bump(tokens, j)) - base).abs().amax(-1)[0] > 1e-6  # (T,)
        if j < n_prefix:
            assert changed[:j].all(), (j, changed)  # prefix positions see the whole prefix
        else:
            assert not changed[:j].any(), (j, changed)  # the rest stays causal
        assert changed[j:].all()
    # forward(prefix_len=0) overrides the config: plain causal
    assert (model(tokens, prefix_len=0)[:, 0] - base[:, 0]).abs().max() > 1e-6


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("prefix_len", [0, 3])
@torch.no_grad()
def test_cached_decoding_equals_full_forward(positional: str, prefix_len: int) -> None:
    model = _model(positional=positional, prefix_len=prefix_len)
    tokens = _tokens(2, 8)
    full = model(tokens)
    first = max(prefix_len, 1)  # the first call covers the bidirectional prefix
    logits, cache = model.decode(tokens[:, :first])
    steps = [logits]
    for t in range(first + 1, tokens.shape[1] + 1):
        logits, cache, attention = model.decode(tokens[:, :t], cache=cache, return_attention=True)
        assert logits.shape == (2, 1, V) and attention.shape == (2, 1, t)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache[0]["self"]["k"].shape == (2, H, 8, D // H)


def test_prefix_lm_refuses_a_cache_shorter_than_the_prefix() -> None:
    model = _model(prefix_len=3)
    tokens = _tokens(1, 5)
    _, cache = model.decode(tokens[:, :2])
    with pytest.raises(ValueError, match="whole bidirectional prefix"):
        model.decode(tokens[:, :3], cache=cache)


@pytest.mark.parametrize("positional", POSITIONALS)
@torch.no_grad()
def test_left_padded_prompts_decode_like_unpadded_ones(positional: str) -> None:
    model = _model(positional=positional)
    short, long = _tokens(1, 3), _tokens(1, 6)
    batch = torch.cat([torch.cat([torch.full((1, 3), PAD_ID), short], dim=1), long])  # (2, 6)
    pad = batch.eq(PAD_ID)
    padded_logits = model(batch, tgt_padding_mask=pad)
    torch.testing.assert_close(padded_logits[0, 3:], model(short)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded_logits[1], model(long)[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(padded_logits).all()  # pad rows attend to nothing: zeros, not NaN
    # continue both prompts with the cache for 3 more tokens; compare with unpadded full passes
    logits, cache = model.decode(batch, tgt_padding_mask=pad)
    seq, mask = batch, pad
    for _ in range(3):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        seq, mask = (
            torch.cat([seq, nxt], 1),
            torch.cat([mask, torch.zeros_like(nxt, dtype=torch.bool)], 1),
        )
        logits, cache = model.decode(seq, cache=cache, tgt_padding_mask=mask)
    torch.testing.assert_close(logits[0, -1], model(seq[:1, 3:])[0, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1, -1], model(seq[1:])[0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positional", POSITIONALS)
def test_training_step_under_bf16_autocast(positional: str) -> None:
    model = _model(positional=positional, prefix_len=2).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = _tokens(3, 9)
    before = model.lm_head.weight.detach().clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert not torch.equal(before, model.lm_head.weight)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_parameter_count_matches_hand_count(tie: bool, positional: str) -> None:
    model = GPT(GPTConfig(V, D, H, 3, FF, max_len=32, positional=positional, tie_embeddings=tie))
    attention = 4 * D * D + 4 * D
    mlp = 2 * D * FF + FF + D
    block = attention + mlp + 2 * (2 * D)  # two LayerNorms per block
    embeddings = V * D + (32 * D if positional == "learned" else 0)
    expected = 3 * block + 2 * D + embeddings + (0 if tie else V * D)  # + final LayerNorm, LM head
    assert sum(p.numel() for p in model.parameters()) == expected


def test_gpt2_initialisation_and_tying() -> None:
    model = GPT(GPTConfig(1000, d_model=128, n_heads=4, n_layers=8, d_ff=512))
    assert model.lm_head.weight is model.token_embedding.weight
    block = model.decoder.blocks[0]
    assert abs(block.self_attn.in_proj.weight.std().item() - 0.02) < 0.002
    assert abs(model.token_embedding.weight.std().item() - 0.02) < 0.002
    residual = 0.02 / math.sqrt(2 * 8)
    assert abs(block.self_attn.out_proj.weight.std().item() - residual) < 0.1 * residual
    assert abs(block.feed_forward.w2.weight.std().item() - residual) < 0.1 * residual
    assert torch.equal(block.feed_forward.w1.bias, torch.zeros(512))


def test_config_errors_and_registry() -> None:
    with pytest.raises(ValueError, match="Did you mean 'gelu'"):
        GPTConfig(V, activation="gelux")
    with pytest.raises(ValueError, match="prefix_len"):
        GPTConfig(V, max_len=8, prefix_len=9)
    with pytest.raises(ValueError, match="max_len=32"):
        _model()(torch.ones(1, 33, dtype=torch.long))
    model = build_model(
        "gpt", {"vocab_size": V, "d_model": D, "n_heads": H, "n_layers": 1, "d_ff": FF}
    )
    assert isinstance(model, GPT) and model.config.positional == "learned"
    with pytest.raises(ValueError, match="Did you mean 'vocab_size'"):
        build_model("gpt", {"vocab": V})
