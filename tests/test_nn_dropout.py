"""treadmill.nn.dropout: the CPU mask's statistics, scaling, gradient, determinism and fallbacks."""

from __future__ import annotations

import math

import pytest
import torch

from treadmill.nn.dropout import Dropout, dropout, dropout_add, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_keep_fraction_matches_p_in_every_lane(p: float) -> None:
    torch.manual_seed(0)
    n = 1 << 20
    keep = keep_mask((n,), p)
    assert keep.dtype == torch.bool and keep.shape == (n,)
    # Each of the four 16-bit lanes of a draw (the last holds 15 bits) must keep 1 - p of its
    # elements; 6 standard deviations of a binomial fraction over n / 4 elements.
    tolerance = 6 * math.sqrt(p * (1 - p) / (n / 4))
    per_lane = keep.view(-1, 4).float().mean(dim=0)
    assert torch.all((per_lane - (1 - p)).abs() < tolerance), per_lane


def test_lanes_are_not_correlated() -> None:
    torch.manual_seed(1)
    keep = keep_mask((1 << 20,), 0.5).view(-1, 4).float()
    both = (keep[:, 0] * keep[:, 3]).mean()
    assert abs(float(both) - 0.25) < 6 * math.sqrt(0.25 * 0.75 / keep.shape[0])


def test_odd_shapes_give_a_mask_of_that_shape() -> None:
    for shape in [(1,), (3,), (5, 7), (2, 3, 5)]:
        assert keep_mask(shape, 0.2).shape == shape


def test_output_is_masked_and_scaled_and_gradient_uses_the_same_mask() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert 0.6 < kept.float().mean() < 0.9
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    grad = torch.randn_like(y)
    y.backward(grad)
    expected = torch.where(kept, grad / 0.75, torch.zeros_like(grad))
    torch.testing.assert_close(x.grad, expected)


def test_same_seed_same_mask_and_gradcheck() -> None:
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    a = dropout(x, 0.4)
    torch.manual_seed(3)
    b = dropout(x, 0.4)
    assert torch.equal(a, b)

    def seeded(t: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(3)
        return dropout(t, 0.4)

    assert torch.autograd.gradcheck(seeded, (x,))


def test_identity_in_eval_and_at_zero_and_zeros_at_one() -> None:
    x = torch.randn(8, 8)
    module = Dropout(0.5).eval()
    assert module(x) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(1.5)


def test_bf16_input_keeps_its_dtype() -> None:
    x = torch.randn(16, 16, dtype=torch.bfloat16)
    y = dropout(x, 0.5)
    assert y.dtype == torch.bfloat16
    kept = y != 0
    torch.testing.assert_close(y[kept], (x[kept].float() * 2).to(torch.bfloat16))


def test_backward_keeps_a_bool_mask() -> None:
    x = torch.randn(128, 128, requires_grad=True)
    y = dropout(x, 0.1)
    saved = y.grad_fn.saved_tensors  # type: ignore[union-attr]
    assert [t.dtype for t in saved] == [torch.bool]


def test_dropout_add_is_residual_plus_dropout_with_both_gradients() -> None:
    residual = torch.randn(8, 16, 32, requires_grad=True)
    x = torch.randn(8, 16, 32, requires_grad=True)
    torch.manual_seed(5)
    fused = dropout_add(residual, x, 0.2)
    torch.manual_seed(5)
    reference = residual + dropout(x, 0.2)
    torch.testing.assert_close(fused, reference)
    grad = torch.randn_like(fused)
    fused.backward(grad)
    torch.testing.assert_close(residual.grad, grad)
    kept = reference.detach() != residual.detach()
    torch.testing.assert_close(x.grad, torch.where(kept, grad / 0.8, torch.zeros_like(grad)))


def test_dropout_add_outside_training_is_a_plain_sum() -> None:
    residual, x = torch.randn(4, 4), torch.randn(4, 4)
    torch.testing.assert_close(dropout_add(residual, x, 0.5, training=False), residual + x)
    with pytest.raises(ValueError, match="dropout probability"):
        dropout_add(residual, x, -0.1)
