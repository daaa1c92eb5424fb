"""The forecaster: shapes, and what per-window normalisation promises."""

import pytest
import torch

from treadmill.models.forecaster import Forecaster, ForecasterConfig


def _model(norm: str) -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(ForecasterConfig(context_len=12, horizon=4, hidden_dim=8, n_layers=1, window_norm=norm)).eval()


def test_output_shape():
    out = _model("none")(torch.randn(3, 12, 1))
    assert out.shape == (3, 4, 1)


def test_mean_norm_moves_the_forecast_with_the_level():
    model, x = _model("mean"), torch.randn(5, 12, 1)
    torch.testing.assert_close(model(x + 100.0), model(x) + 100.0, rtol=0, atol=1e-4)


def test_meanstd_norm_follows_level_and_scale():
    model, x = _model("meanstd"), torch.randn(5, 12, 1)
    torch.testing.assert_close(model(3.0 * x - 7.0), 3.0 * model(x) - 7.0, rtol=1e-5, atol=1e-4)


def test_without_norm_a_level_shift_is_not_simply_passed_through():
    model, x = _model("none"), torch.randn(5, 12, 1)
    assert not torch.allclose(model(x + 100.0), model(x) + 100.0, atol=1e-2)


def test_unknown_norm_is_rejected_by_name():
    with pytest.raises(ValueError, match="window_norm"):
        ForecasterConfig(context_len=12, horizon=4, window_norm="revin")
