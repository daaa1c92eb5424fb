"""Masks: the boolean conventions, causal / prefix-causal shapes, combining, and prefix semantics."""

import pytest
import torch

from treadmill.constants import PAD_ID
from treadmill.nn import MultiHeadAttention
from treadmill.nn.masks import (
    and_masks,
    causal_mask,
    lengths_from_padding_mask,
    or_masks,
    padding_mask,
    padding_to_attention_mask,
    positions_from_padding_mask,
    prefix_causal_mask,
)


def test_padding_mask_from_lengths_and_tokens_agree() -> None:
    lengths = torch.tensor([3, 1, 4])
    from_lengths = padding_mask(lengths)
    expected = torch.tensor(
        [[False, False, False, True], [False, True, True, True], [False, False, False, False]]
    )
    assert torch.equal(from_lengths, expected)
    tokens = torch.tensor([[5, 6, 7, PAD_ID], [5, PAD_ID, PAD_ID, PAD_ID], [5, 6, 7, 8]])
    assert torch.equal(padding_mask(tokens), expected)
    assert torch.equal(lengths_from_padding_mask(expected), lengths)
    assert padding_mask(lengths, max_len=6).shape == (3, 6)


def test_padding_mask_rejects_3d() -> None:
    with pytest.raises(ValueError, match="lengths"):
        padding_mask(torch.zeros(2, 2, 2))


def test_causal_mask_is_lower_triangular_and_bottom_right_aligned() -> None:
    assert torch.equal(causal_mask(4), torch.ones(4, 4).tril().bool())
    # 2 new queries at absolute positions 3 and 4 of a 5-key sequence
    assert torch.equal(causal_mask(2, 5), torch.ones(5, 5).tril().bool()[3:])
    with pytest.raises(ValueError, match="src_len"):
        causal_mask(3, 2)


def test_prefix_causal_mask_matches_hand_written() -> None:
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
        ]
    ).bool()
    assert torch.equal(prefix_causal_mask(5, 2), expected)
    assert torch.equal(prefix_causal_mask(5, 0), causal_mask(5))
    assert prefix_causal_mask(3, 10).all()  # prefix longer than the sequence: fully bidirectional


def test_positions_from_left_padding_count_real_tokens() -> None:
    mask = torch.tensor([[True, True, False, False, False], [False, False, False, False, False]])
    assert positions_from_padding_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_combine_masks_broadcasts_and_skips_none() -> None:
    pad = torch.tensor([[False, False, True], [False, True, True]])
    allowed = and_masks(causal_mask(3), padding_to_attention_mask(pad))
    assert allowed is not None and allowed.shape == (2, 3, 3)
    assert allowed[0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    assert allowed[1].tolist() == [[True, False, False]] * 3
    either = or_masks(causal_mask(3), None, ~causal_mask(3))
    assert either is not None and either.all()
    assert and_masks(None, None) is None
    with pytest.raises(TypeError, match="bool"):
        padding_to_attention_mask(pad.long())


@pytest.mark.parametrize("n_prefix", [2, 3])
def test_prefix_mask_semantics_by_perturbation(n_prefix: int) -> None:
    torch.manual_seed(0)
    seq_len, d_model = 6, 8
    attn = MultiHeadAttention(d_model, 2).eval()
    mask = prefix_causal_mask(seq_len, n_prefix)
    x = torch.randn(1, seq_len, d_model)
    base = attn(x, attn_mask=mask).output
    for j in range(seq_len):
        x2 = x.clone()
        x2[0, j] += 1.0
        changed = (attn(x2, attn_mask=mask).output - base).abs().amax(-1)[0] > 1e-6  # (seq_len,)
        if j < n_prefix:  # a prefix position is seen by every earlier prefix position
            assert changed[:j].all(), (j, changed)
        else:  # a non-prefix position is never seen by earlier positions
            assert not changed[:j].any(), (j, changed)
        assert changed[j:].all()  # and always by itself and later positions
