"""MultiHeadAttention: equals torch.nn.MultiheadAttention, masks, NaN-free rows, KV cache, RoPE."""

import pytest
import torch
from torch import nn

from treadmill.nn import MultiHeadAttention, RotaryEmbedding, causal_mask

D_MODEL, N_HEADS = 16, 4


def _pair(bias: bool = True) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True, bias=bias).eval()
    ours = MultiHeadAttention(D_MODEL, N_HEADS, bias=bias).eval()
    with torch.no_grad():
        ours.in_proj.weight.copy_(ref.in_proj_weight)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if bias:
            ours.in_proj.bias.copy_(ref.in_proj_bias)
            ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours, ref


def _key_padding(batch: int, src_len: int) -> torch.Tensor:
    mask = torch.zeros(batch, src_len, dtype=torch.bool)
    mask[1, src_len - 2 :] = True  # row 1 has two pads; every row keeps a real key
    mask[2, src_len - 1 :] = True
    return mask


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["self", "self-causal", "cross"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_matches_torch_multihead_attention(
    bias: bool, kind: str, padded: bool, need_weights: bool
) -> None:
    ours, ref = _pair(bias)
    cross, causal = kind == "cross", kind == "self-causal"
    batch, tgt_len = 3, 5
    src_len = 7 if cross else tgt_len
    x = torch.randn(batch, tgt_len, D_MODEL)
    kv = torch.randn(batch, src_len, D_MODEL) if cross else x
    kpm = _key_padding(batch, src_len) if padded else None
    # torch's bool attn_mask is True = BLOCKED; ours is True = MAY ATTEND.
    torch_mask = ~causal_mask(tgt_len) if causal else None
    if causal and padded:
        kpm = torch.zeros(batch, src_len, dtype=torch.bool)
        kpm[1, -2:] = True  # right padding: every query row keeps key 0
    expected, expected_w = ref(x, kv, kv, key_padding_mask=kpm, attn_mask=torch_mask)
    out = ours(
        x, kv if cross else None, key_padding_mask=kpm, is_causal=causal, need_weights=need_weights
    )
    torch.testing.assert_close(out.output, expected, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(out.weights, expected_w, atol=1e-5, rtol=1e-5)
    else:
        assert out.weights is None


def test_per_batch_attn_mask_matches_torch() -> None:
    ours, ref = _pair()
    batch, tgt_len, src_len = 2, 4, 6
    x, kv = torch.randn(batch, tgt_len, D_MODEL), torch.randn(batch, src_len, D_MODEL)
    allowed = torch.rand(batch, tgt_len, src_len) > 0.4
    allowed[..., 0] = True  # no fully masked rows (torch returns NaN there)
    torch_mask = (~allowed).repeat_interleave(
        N_HEADS, dim=0
    )  # torch: (B * heads, T, S), True = blocked
    expected, _ = ref(x, kv, kv, attn_mask=torch_mask)
    torch.testing.assert_close(
        ours(x, kv, attn_mask=allowed).output, expected, atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        ours(x, kv, attn_mask=allowed, need_weights=True).output, expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_rows_give_zeros_not_nan(need_weights: bool) -> None:
    ours, _ = _pair()
    x = torch.randn(2, 4, D_MODEL, requires_grad=True)
    allowed = causal_mask(4).expand(2, 4, 4).clone()
    allowed[0, 1] = False  # query 1 of row 0 may attend to nothing
    out = ours(x, attn_mask=allowed, need_weights=need_weights)
    assert torch.isfinite(out.output).all()
    # the row's attention output is zero, so the block output is the out-projection bias
    torch.testing.assert_close(out.output[0, 1], ours.out_proj.bias, atol=1e-6, rtol=0)
    if need_weights:
        assert out.weights is not None and torch.equal(out.weights[0, 1], torch.zeros(4))
    out.output.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_masked_keys_do_not_change_output() -> None:
    ours, _ = _pair()
    x = torch.randn(2, 3, D_MODEL)
    kv = torch.randn(2, 6, D_MODEL)
    kpm = torch.zeros(2, 6, dtype=torch.bool)
    kpm[:, 4:] = True
    kv2 = kv.clone()
    kv2[:, 4:] = 100.0 * torch.randn(2, 2, D_MODEL)
    for need_weights in (False, True):
        a = ours(x, kv, key_padding_mask=kpm, need_weights=need_weights).output
        b = ours(x, kv2, key_padding_mask=kpm, need_weights=need_weights).output
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_mask_errors_name_the_problem() -> None:
    ours, _ = _pair()
    x = torch.randn(2, 3, D_MODEL)
    with pytest.raises(TypeError, match="MAY attend"):
        ours(x, attn_mask=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="key_padding_mask"):
        ours(x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_heads"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize("rope", [False, True])
def test_self_attention_cache_equals_full_causal_pass(rope: bool) -> None:
    torch.manual_seed(0)
    rotary = RotaryEmbedding(D_MODEL // N_HEADS, max_len=32) if rope else None
    attn = MultiHeadAttention(D_MODEL, N_HEADS, rotary=rotary).eval()
    x = torch.randn(2, 7, D_MODEL)
    full = attn(x, is_causal=True).output
    # a 3-token first chunk, then one token at a time
    first = attn(x[:, :3], is_causal=True, use_cache=True)
    outputs, cache = [first.output], first.cache
    for t in range(3, 7):
        step = attn(x[:, t : t + 1], is_causal=True, cache=cache)
        outputs.append(step.output)
        cache = step.cache
    assert cache is not None and cache["k"].shape == (2, N_HEADS, 7, D_MODEL // N_HEADS)
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=1e-5, rtol=1e-5)
    # a multi-token chunk on top of a cache uses a bottom-right causal mask
    head = attn(x[:, :4], is_causal=True, use_cache=True)
    tail = attn(x[:, 4:], is_causal=True, cache=head.cache)
    torch.testing.assert_close(tail.output, full[:, 4:], atol=1e-5, rtol=1e-5)


def test_cross_attention_cache_reuses_keys_and_values() -> None:
    ours, _ = _pair()
    x, memory = torch.randn(2, 1, D_MODEL), torch.randn(2, 5, D_MODEL)
    first = ours(x, memory, use_cache=True)
    assert first.cache is not None
    # with a cache, the memory is not projected again: garbage memory gives the same output
    again = ours(x, torch.full_like(memory, 1e4), cache=first.cache)
    torch.testing.assert_close(again.output, first.output, atol=0, rtol=0)
    assert again.cache is not None and again.cache["k"] is first.cache["k"]


def test_rope_scores_depend_on_relative_position_only() -> None:
    rope = RotaryEmbedding(8, max_len=64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq: int, pk: int) -> torch.Tensor:
        return (rope.rotate(q, torch.tensor([pq])) * rope.rotate(k, torch.tensor([pk]))).sum()

    torch.testing.assert_close(score(5, 2), score(40, 37), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4))
    # rotation keeps norms and position 0 is the identity
    assert torch.equal(rope.rotate(q, torch.tensor([0])), q)
    torch.testing.assert_close(rope.rotate(q, torch.tensor([9])).norm(), q.norm())


def test_rope_per_row_positions_match_shared_positions() -> None:
    rope = RotaryEmbedding(8, max_len=16)
    x = torch.randn(2, 3, 4, 8)
    shared = rope.rotate(x, torch.arange(2, 6))
    per_row = rope.rotate(x, torch.arange(2, 6).expand(2, 4))
    torch.testing.assert_close(shared, per_row, atol=0, rtol=0)


@pytest.mark.parametrize("case", ["padding", "causal", "padding+causal", "fully masked row"])
def test_cpu_bf16_explicit_softmax_matches_fused_kernel(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 on CPU takes the written-out softmax; outputs and gradients match SDPA's fused kernel."""
    import treadmill.nn.attention as attention

    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4).to(torch.bfloat16)
    x = torch.randn(6, 9, 32, dtype=torch.bfloat16)
    padding = torch.zeros(6, 9, dtype=torch.bool)
    padding[:3, 6:] = True
    attn_mask = None
    if case == "fully masked row":
        attn_mask = torch.ones(9, 9, dtype=torch.bool)
        attn_mask[4] = False
    kwargs = {
        "key_padding_mask": padding if "padding" in case else None,
        "is_causal": "causal" in case,
        "attn_mask": attn_mask,
    }

    def run() -> tuple[torch.Tensor, ...]:
        inputs = x.clone().requires_grad_(True)
        attn.zero_grad()
        out = attn(inputs, **kwargs).output
        out.float().square().sum().backward()
        return out.detach(), inputs.grad, attn.in_proj.weight.grad

    explicit = run()
    monkeypatch.setattr(attention, "CPU_BF16_EXPLICIT_MAX_KEYS", 0)
    fused = run()
    if case == "fully masked row":
        # The row attends to nothing, so the block output is the out-projection bias alone.
        assert torch.equal(explicit[0][:, 4], attn.out_proj.bias.detach().expand(6, 32))
    for got, want in zip(explicit, fused, strict=True):
        torch.testing.assert_close(got, want, atol=3e-2, rtol=3e-2)
    # The two kernels really differ (so the comparison above compares something).
    assert not torch.equal(explicit[1], fused[1])
