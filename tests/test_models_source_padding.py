"""src_padding_mask=None means "derive it from PAD": extra PAD columns change nothing, explicit masks win."""

import itertools

import pytest
import torch
from torch import Tensor, nn

from treadmill.constants import BOS_ID, PAD_ID
from treadmill.decoding import generate
from treadmill.models import rnn_seq2seq, transformer_seq2seq

SRC_V, TGT_V, EXTRA = 19, 17, 3
RNN_VARIANTS = list(
    itertools.product(["lstm", "gru"], [None, "bahdanau", "luong-dot", "luong-general", "luong-concat"])
)
MODELS = [f"transformer-{p}" for p in ("sinusoidal", "learned", "rope")] + [
    f"rnn-{cell}-{attention}" for cell, attention in RNN_VARIANTS
]


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    kind, *rest = name.split("-", 2)
    if kind == "transformer":
        return transformer_seq2seq(
            SRC_V, TGT_V, d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=2, d_ff=32,
            positional=rest[0], max_len=32,
        ).eval()  # fmt: skip
    cell, attention = rest[0], None if rest[1] == "None" else rest[1]
    return rnn_seq2seq(
        SRC_V, TGT_V, embed_dim=8, hidden_dim=12, n_layers=2, cell=cell, attention=attention
    ).eval()


def _batch() -> tuple[Tensor, Tensor]:
    """Right-padded sources of lengths 6, 4, 2 (one row with no PAD) and BOS-first targets."""
    torch.manual_seed(1)
    lengths = torch.tensor([6, 4, 2])
    src = torch.randint(4, SRC_V, (3, 6)).masked_fill(
        torch.arange(6)[None, :] >= lengths[:, None], PAD_ID
    )
    tgt = torch.randint(4, TGT_V, (3, 5))
    tgt[:, 0] = BOS_ID
    return src, tgt


def _with_pad_columns(src: Tensor, n: int = EXTRA) -> Tensor:
    """src (B, S) -> (B, S + n): n more PAD columns on the right."""
    return torch.cat([src, torch.full((src.shape[0], n), PAD_ID, dtype=src.dtype)], dim=1)


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_teacher_forced_logits_ignore_appended_pad_columns_without_a_mask(name: str) -> None:
    model = _model(name)
    src, tgt = _batch()
    logits = model(src, tgt)
    padded = model(_with_pad_columns(src), tgt)
    assert torch.allclose(padded, logits, atol=1e-6)
    assert torch.allclose(model(src, tgt, src == PAD_ID), logits, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_an_explicit_mask_still_wins(name: str) -> None:
    model = _model(name)
    src, tgt = _batch()
    wide = _with_pad_columns(src)
    derived = model(wide, tgt)
    # A mask saying "no padding" over the PAD columns of the shortest row: the model must use it
    # (the RNN packs whole rows, the Transformer attends to the PADs), so the logits move.
    lengths = torch.tensor([wide.shape[1], 4, 2])
    mask = torch.arange(wide.shape[1])[None, :] >= lengths[:, None]  # row 0: no padding
    explicit = model(wide, tgt, mask)
    assert torch.allclose(explicit[1:], derived[1:], atol=1e-6)
    assert not torch.allclose(explicit[0], derived[0], atol=1e-4)
    memory = model.encode(wide, mask)
    assert torch.equal(memory["padding_mask"], mask)


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_encode_then_cached_decode_without_masks_ignores_pad_columns(name: str) -> None:
    model = _model(name)
    src, tgt = _batch()
    full = model(src, tgt, src == PAD_ID)
    memory = model.encode(_with_pad_columns(src))
    no_cache, _ = model.decode(tgt, memory)
    assert torch.allclose(no_cache, full, atol=1e-6)
    cache, steps = None, []
    for t in range(1, tgt.shape[1] + 1):
        logits, cache = model.decode(tgt[:, :t], memory, None, cache)
        steps.append(logits[:, -1:])
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_generate_without_a_mask_ignores_pad_columns(name: str, strategy: str) -> None:
    model = _model(name)
    src, _ = _batch()
    options = dict(strategy=strategy, max_len=8, return_scores=True)
    if strategy == "beam":
        options["beam_size"] = 3
    reference = generate(model, src, src == PAD_ID, **options)
    padded = generate(model, _with_pad_columns(src), **options)
    assert padded.sequences == reference.sequences
    assert torch.allclose(padded.scores, reference.scores, atol=1e-5)


@torch.no_grad()
def test_rnn_derived_mask_counts_trailing_pads_only() -> None:
    # Packed sequences cannot skip interior positions: an interior PAD stays a token, and an
    # all-PAD row keeps one position so that packing has something to run over.
    model = _model("rnn-gru-bahdanau")
    src = torch.tensor([[5, PAD_ID, 6, PAD_ID], [PAD_ID, PAD_ID, PAD_ID, PAD_ID]])
    memory = model.encode(src)
    assert memory["padding_mask"].tolist() == [
        [False, False, False, True],
        [False, True, True, True],
    ]
    tgt = torch.tensor([[BOS_ID, 4], [BOS_ID, 4]])
    assert torch.isfinite(model(src, tgt)).all()
