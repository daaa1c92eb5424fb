"""TransformerSeq2Seq: causality, padding, cached == full, bf16 step, parameter count, config."""

import pytest
import torch
import torch.nn.functional as F

from treadmill.constants import BOS_ID, PAD_ID
from treadmill.models import (
    Seq2SeqModel,
    TransformerSeq2Seq,
    TransformerSeq2SeqConfig,
    build_model,
    map_tensors,
    transformer_seq2seq,
)

SRC_V, TGT_V, D, H, FF = 23, 19, 16, 4, 32
POSITIONALS = ["sinusoidal", "learned", "rope"]


def _model(positional: str = "sinusoidal", **kw) -> TransformerSeq2Seq:
    args = dict(
        d_model=D,
        n_heads=H,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=FF,
        positional=positional,
        max_len=32,
    )
    args.update(kw)
    return TransformerSeq2Seq(TransformerSeq2SeqConfig(SRC_V, TGT_V, **args)).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.randint(4, SRC_V, (3, 7))
    src_mask = torch.zeros(3, 7, dtype=torch.bool)
    src_mask[1, 5:] = True
    src_mask[2, 3:] = True
    src = src.masked_fill(src_mask, PAD_ID)
    tgt = torch.randint(4, TGT_V, (3, 6))
    tgt[:, 0] = BOS_ID
    return src, tgt, src_mask


def test_implements_the_protocol() -> None:
    model = _model()
    assert isinstance(model, Seq2SeqModel) and model.is_encoder_decoder


@pytest.mark.parametrize("positional", POSITIONALS)
@torch.no_grad()
def test_changing_target_token_j_never_changes_earlier_logits(positional: str) -> None:
    model = _model(positional)
    src, tgt, src_mask = _batch()
    base = model(src, tgt, src_mask)
    for j in range(1, tgt.shape[1]):
        tgt2 = tgt.clone()
        tgt2[:, j] = (tgt2[:, j] + 1 - 4) % (TGT_V - 4) + 4
        out = model(src, tgt2, src_mask)
        torch.testing.assert_close(out[:, :j], base[:, :j], atol=1e-6, rtol=0)
        assert (out[:, j] - base[:, j]).abs().max() > 1e-4  # position j itself does see it


@pytest.mark.parametrize("positional", POSITIONALS)
@torch.no_grad()
def test_padded_source_positions_change_no_output(positional: str) -> None:
    model = _model(positional)
    src, tgt, src_mask = _batch()
    base = model(src, tgt, src_mask)
    src2 = src.clone()
    src2[src_mask] = torch.randint(4, SRC_V, (int(src_mask.sum()),))
    torch.testing.assert_close(model(src2, tgt, src_mask), base, atol=1e-6, rtol=0)
    # and the mask matters: without it the padded tokens do change the output
    assert (model(src2, tgt) - base).abs().max() > 1e-4


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("norm_first", [True, False])
@torch.no_grad()
def test_cached_decoding_equals_full_forward(positional: str, norm_first: bool) -> None:
    model = _model(positional, norm_first=norm_first)
    src, tgt, src_mask = _batch()
    full = model(src, tgt, src_mask)
    memory = model.encode(src, src_mask)
    no_cache, _ = model.decode(tgt, memory, src_mask)
    torch.testing.assert_close(no_cache, full, atol=1e-5, rtol=1e-5)
    cache, steps = None, []
    for t in range(1, tgt.shape[1] + 1):
        logits, cache, attention = model.decode(
            tgt[:, :t], memory, src_mask, cache, return_attention=True
        )
        assert logits.shape == (3, 1 if t > 1 else t, TGT_V)
        assert attention.shape == (3, logits.shape[1], src.shape[1])
        assert torch.equal(
            attention[src_mask.unsqueeze(1).expand_as(attention)], torch.zeros(int(src_mask.sum()))
        )
        torch.testing.assert_close(attention.sum(-1), torch.ones(3, logits.shape[1]))
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_cache_reordered_by_index_select_matches_reordered_batch() -> None:
    # what beam search does: reorder memory and cache rows, then decode the next token
    model = _model("rope")
    src, tgt, src_mask = _batch()
    memory = model.encode(src, src_mask)
    _, cache = model.decode(tgt[:, :3], memory, src_mask)
    order = torch.tensor([2, 0, 0])
    pick = lambda t: t.index_select(0, order)  # noqa: E731
    logits, _ = model.decode(
        tgt[order, :4], map_tensors(pick, memory), src_mask[order], map_tensors(pick, cache)
    )
    expected = model(src[order], tgt[order, :4], src_mask[order])[:, -1:]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert all(t.shape[0] == 3 for layer in cache for part in layer.values() for t in part.values())


@pytest.mark.parametrize("positional", POSITIONALS)
def test_training_step_under_bf16_autocast(positional: str) -> None:
    model = _model(positional).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    src, tgt, src_mask = _batch()
    before = model.output_proj.weight.detach().clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, tgt[:, :-1], src_mask)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD_ID
        )
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert not torch.equal(before, model.output_proj.weight)


def _hand_count(
    d: int,
    ff: int,
    n_enc: int,
    n_dec: int,
    src_v: int,
    tgt_v: int,
    *,
    tied: bool,
    shared: bool,
    norm_first: bool,
    learned_len: int = 0,
) -> int:
    attention = 4 * d * d + 4 * d  # W_q, W_k, W_v, W_o and their biases
    ffn = 2 * d * ff + ff + d
    layer_norm = 2 * d
    encoder = n_enc * (attention + ffn + 2 * layer_norm) + (layer_norm if norm_first else 0)
    decoder = n_dec * (2 * attention + ffn + 3 * layer_norm) + (layer_norm if norm_first else 0)
    embeddings = (0 if shared else src_v * d) + tgt_v * d + (0 if tied else tgt_v * d)
    return encoder + decoder + embeddings + 2 * learned_len * d


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(tie_embeddings=False),
        dict(norm_first=False),
        dict(positional="learned"),
        dict(share_vocab=True, tie_embeddings=True),
    ],
)
def test_parameter_count_matches_hand_count(kw: dict) -> None:
    src_v = TGT_V if kw.get("share_vocab") else SRC_V
    model = transformer_seq2seq(
        src_v,
        TGT_V,
        d_model=D,
        n_heads=H,
        n_encoder_layers=2,
        n_decoder_layers=3,
        d_ff=FF,
        max_len=32,
        **kw,
    )
    expected = _hand_count(
        D,
        FF,
        2,
        3,
        src_v,
        TGT_V,
        tied=kw.get("tie_embeddings", True),
        shared=kw.get("share_vocab", False),
        norm_first=kw.get("norm_first", True),
        learned_len=32 if kw.get("positional") == "learned" else 0,
    )
    assert sum(p.numel() for p in model.parameters()) == expected


def test_initialisation_and_tying() -> None:
    model = transformer_seq2seq(500, 400, d_model=64, n_heads=4, d_ff=128)
    assert model.output_proj.weight is model.tgt_embedding.weight
    assert torch.equal(model.src_embedding.weight[PAD_ID], torch.zeros(64))
    std = model.src_embedding.weight[1:].std().item()
    assert abs(std - 64**-0.5) < 0.1 * 64**-0.5
    w = model.encoder.blocks[
        0
    ].feed_forward.w1.weight  # xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() <= (6 / (64 + 128)) ** 0.5
    assert w.abs().max() > 0.9 * (6 / (64 + 128)) ** 0.5
    assert torch.equal(model.encoder.blocks[0].feed_forward.w1.bias, torch.zeros(128))
    shared = transformer_seq2seq(50, 50, d_model=16, n_heads=2, d_ff=32, share_vocab=True)
    assert shared.src_embedding is shared.tgt_embedding


def test_config_errors_name_the_field_and_fix() -> None:
    with pytest.raises(ValueError, match="share_vocab"):
        TransformerSeq2SeqConfig(10, 12, share_vocab=True)
    with pytest.raises(ValueError, match="n_heads"):
        TransformerSeq2SeqConfig(10, 10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="Did you mean 'rope'"):
        TransformerSeq2SeqConfig(10, 10, positional="ropee")
    with pytest.raises(ValueError, match="dropout"):
        TransformerSeq2SeqConfig(10, 10, dropout=1.5)
    with pytest.raises(ValueError, match="max_len=32"):
        _model()(torch.ones(1, 40, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))


def test_registry_builds_from_dict_and_rejects_unknown_keys() -> None:
    cfg = dict(
        src_vocab_size=SRC_V,
        tgt_vocab_size=TGT_V,
        d_model=D,
        n_heads=H,
        d_ff=FF,
        n_encoder_layers=1,
        n_decoder_layers=1,
        positional="learned",
    )
    model = build_model("transformer", cfg)
    assert isinstance(model, TransformerSeq2Seq) and model.config.positional == "learned"
    again = TransformerSeq2Seq(model.config)
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="Did you mean 'n_heads'"):
        build_model("transformer", {**cfg, "n_head": 2})
    with pytest.raises(ValueError, match="Did you mean 'transformer'"):
        build_model("transformr", cfg)
    with pytest.raises(ValueError, match="tgt_vocab_size"):
        build_model("transformer", {"src_vocab_size": 5})
