"""RNNSeq2Seq: every cell x attention kind is causal, padding-blind, cached == full; counts; bf16."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from treadmill.constants import BOS_ID, PAD_ID
from treadmill.models import (
    RNNSeq2Seq,
    RNNSeq2SeqConfig,
    Seq2SeqModel,
    build_model,
    map_tensors,
    rnn_seq2seq,
)
from treadmill.nn import BahdanauAttention, LuongAttention

SRC_V, TGT_V, E, HID = 17, 13, 6, 8
CELLS = ["lstm", "gru"]
ATTENTIONS = [None, "bahdanau", "luong-dot", "luong-general", "luong-concat"]
VARIANTS = list(itertools.product(CELLS, ATTENTIONS))


def _model(cell: str, attention: str | None, **kw) -> RNNSeq2Seq:
    args = dict(embed_dim=E, hidden_dim=HID, n_layers=2, cell=cell, attention=attention)
    args.update(kw)
    return RNNSeq2Seq(RNNSeq2SeqConfig(SRC_V, TGT_V, **args)).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([6, 4, 2])
    src_mask = torch.arange(6)[None, :] >= lengths[:, None]
    src = torch.randint(4, SRC_V, (3, 6)).masked_fill(src_mask, PAD_ID)
    tgt = torch.randint(4, TGT_V, (3, 5))
    tgt[:, 0] = BOS_ID
    return src, tgt, src_mask


def test_implements_the_protocol() -> None:
    model = _model("lstm", "bahdanau")
    assert isinstance(model, Seq2SeqModel) and model.is_encoder_decoder


@pytest.mark.parametrize("cell,attention", VARIANTS)
@torch.no_grad()
def test_changing_target_token_j_never_changes_earlier_logits(
    cell: str, attention: str | None
) -> None:
    model = _model(cell, attention)
    src, tgt, src_mask = _batch()
    base = model(src, tgt, src_mask)
    for j in range(1, tgt.shape[1]):
        tgt2 = tgt.clone()
        tgt2[:, j] = (tgt2[:, j] - 4 + 1) % (TGT_V - 4) + 4
        out = model(src, tgt2, src_mask)
        torch.testing.assert_close(out[:, :j], base[:, :j], atol=0, rtol=0)
        assert (out[:, j] - base[:, j]).abs().max() > 1e-5


@pytest.mark.parametrize("cell,attention", VARIANTS)
@torch.no_grad()
def test_padded_source_positions_change_no_output(cell: str, attention: str | None) -> None:
    model = _model(cell, attention)
    src, tgt, src_mask = _batch()
    base = model(src, tgt, src_mask)
    src2 = src.clone()
    src2[src_mask] = torch.randint(4, SRC_V, (int(src_mask.sum()),))
    torch.testing.assert_close(model(src2, tgt, src_mask), base, atol=1e-6, rtol=0)
    # packing already zeroes encoder outputs at pads, so the perturbation alone cannot see a
    # missing attention mask: check that pads get exactly zero attention weight as well
    if attention is not None:
        _, _, weights = model.decode(
            tgt, model.encode(src2, src_mask), src_mask, return_attention=True
        )
        assert torch.equal(
            weights.masked_select(src_mask[:, None, :]), torch.zeros(int(src_mask.sum()) * 5)
        )


@pytest.mark.parametrize("cell,attention", VARIANTS)
@torch.no_grad()
def test_cached_decoding_equals_full_forward(cell: str, attention: str | None) -> None:
    model = _model(cell, attention)
    src, tgt, src_mask = _batch()
    full = model(src, tgt, src_mask)
    memory = model.encode(src, src_mask)
    assert all(t.shape[0] == 3 for t in memory.values())  # batch first, for beam search
    cache, steps = None, []
    for t in range(1, tgt.shape[1] + 1):
        logits, cache, weights = model.decode(
            tgt[:, :t], memory, src_mask, cache, return_attention=True
        )
        assert logits.shape == (3, 1, TGT_V) and cache["length"] == t
        if attention is None:
            assert weights is None
        else:
            assert torch.equal(weights[:, 0][src_mask], torch.zeros(int(src_mask.sum())))
            torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1))
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache["state"].shape == (3, 2, HID)  # (batch, num_layers, hidden)


@pytest.mark.parametrize("cell,attention", [("lstm", "luong-general"), ("gru", "bahdanau")])
@torch.no_grad()
def test_batched_equals_one_by_one_and_reordered_cache(cell: str, attention: str) -> None:
    model = _model(cell, attention)
    src, tgt, src_mask = _batch()
    batched = model(src, tgt, src_mask)
    for i in range(3):
        n = int((~src_mask[i]).sum())
        alone = model(src[i : i + 1, :n], tgt[i : i + 1])
        torch.testing.assert_close(alone, batched[i : i + 1], atol=1e-5, rtol=1e-5)
    # beam-search style reordering of memory and cache with index_select(0, order)
    memory = model.encode(src, src_mask)
    _, cache = model.decode(tgt[:, :3], memory, src_mask)
    order = torch.tensor([1, 1, 0])
    pick = lambda t: t.index_select(0, order)  # noqa: E731
    logits, _ = model.decode(
        tgt[order, :4], map_tensors(pick, memory), src_mask[order], map_tensors(pick, cache)
    )
    torch.testing.assert_close(logits, batched[order, 3:4], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell,attention", VARIANTS)
def test_training_step_under_bf16_autocast(cell: str, attention: str | None) -> None:
    model = _model(cell, attention).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    src, tgt, src_mask = _batch()
    before = model.output_proj.weight.detach().clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, tgt[:, :-1], src_mask)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tgt[:, 1:].flatten())
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert not torch.equal(before, model.output_proj.weight)


def _lstm(input_dim: int, hidden: int) -> int:
    return 4 * hidden * (input_dim + hidden) + 8 * hidden  # 4 gates, W_ih, W_hh, two biases


def _gru(input_dim: int, hidden: int) -> int:
    return 3 * hidden * (input_dim + hidden) + 6 * hidden


@pytest.mark.parametrize("cell,attention", VARIANTS)
def test_parameter_count_matches_hand_count(cell: str, attention: str | None) -> None:
    model = rnn_seq2seq(SRC_V, TGT_V, embed_dim=E, hidden_dim=HID, n_layers=2, cell=cell, attention=attention)
    rnn = _lstm if cell == "lstm" else _gru
    half = HID // 2  # each encoder direction has hidden_dim / 2
    encoder = SRC_V * E + 2 * (rnn(E, half) + rnn(2 * half, half))  # 2 directions x 2 layers
    bridge = (2 if cell == "lstm" else 1) * (HID * HID + HID)
    extra = 0 if attention is None else HID  # context (Bahdanau) or input feeding (Luong)
    decoder = TGT_V * E + rnn(E + extra, HID) + rnn(HID, HID)
    attn = {
        None: 0,
        "bahdanau": HID * HID + (HID * HID + HID) + HID,  # W_k, W_q + bias, v
        "luong-dot": 0,
        "luong-general": HID * HID,
        "luong-concat": 2 * HID * HID + HID,
    }[attention]
    combine = 0 if attention is None else 2 * HID * HID
    output = HID * TGT_V + TGT_V
    expected = encoder + bridge + decoder + attn + combine + output
    assert sum(p.numel() for p in model.parameters()) == expected


@torch.no_grad()
def test_luong_scores_by_hand() -> None:
    query, values = torch.randn(2, 4), torch.randn(2, 3, 4)
    pad = torch.tensor([[False, False, True], [False, False, False]])
    dot = LuongAttention(4, 4, "dot")
    context, weights = dot(query, dot.keys(values), values, pad)
    scores = torch.einsum("bd,bsd->bs", query, values).masked_fill(pad, float("-inf"))
    torch.testing.assert_close(weights, scores.softmax(-1))
    torch.testing.assert_close(context, torch.einsum("bs,bsd->bd", scores.softmax(-1), values))
    general = LuongAttention(4, 4, "general")
    _, w = general(query, general.keys(values), values)
    scores = torch.einsum("bd,bsd->bs", query, values @ general.key_proj.weight.T)
    torch.testing.assert_close(w, scores.softmax(-1))
    bahdanau = BahdanauAttention(4, 4)
    _, w = bahdanau(query, bahdanau.keys(values), values)
    hidden = torch.tanh(bahdanau.key_proj(values) + bahdanau.query_proj(query)[:, None])
    torch.testing.assert_close(w, (hidden @ bahdanau.v.weight[0]).softmax(-1))
    with pytest.raises(ValueError, match="general"):
        LuongAttention(4, 6, "dot")


def test_errors_name_the_problem() -> None:
    model = _model("gru", "luong-dot")
    src, tgt, _ = _batch()
    left_padded = torch.zeros(3, 6, dtype=torch.bool)
    left_padded[0, 0] = True
    with pytest.raises(ValueError, match="row 0 is not right-padded"):
        model(src, tgt, left_padded)
    with pytest.raises(ValueError, match="Did you mean 'luong-dot'"):
        RNNSeq2SeqConfig(5, 5, attention="luong_dot")
    with pytest.raises(ValueError, match="even"):
        RNNSeq2SeqConfig(5, 5, hidden_dim=7)
    with pytest.raises(ValueError, match="Did you mean 'gru'"):
        build_model("rnn", {"src_vocab_size": 5, "tgt_vocab_size": 5, "cell": "gruu"})
    with pytest.raises(ValueError, match="Did you mean 'hidden_dim'"):
        build_model("rnn", {"src_vocab_size": 5, "tgt_vocab_size": 5, "hiden_dim": 8})
    built = build_model("rnn", {"src_vocab_size": 5, "tgt_vocab_size": 6, "attention": "bahdanau"})
    assert isinstance(built, RNNSeq2Seq) and built.config.hidden_dim == 256
