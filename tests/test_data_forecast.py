"""Forecast tasks (windows, chronological splits, normalisation) and baselines/MASE."""

import math

import pytest
import torch

from treadmill.data import get_task, task_sizes
from treadmill.data.tasks.forecast import (
    evaluate_forecaster,
    mase,
    naive_forecast,
    seasonal_naive_forecast,
    seasonal_naive_scale,
)


def _periodic(n, season, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64)
    return (
        torch.sin(2 * math.pi * t / season)
        + 0.3 * torch.cos(4 * math.pi * t / season)
        + noise * torch.randn(n, generator=g, dtype=torch.float64)
    )


def test_naive_and_seasonal_naive_by_hand():
    src = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert naive_forecast(src, 3).squeeze(-1).tolist() == [5.0, 5.0, 5.0]
    # season 2: the last season is (4, 5), repeated.
    assert seasonal_naive_forecast(src, 5, 2).squeeze(-1).tolist() == [4.0, 5.0, 4.0, 5.0, 4.0]
    batch = torch.stack([src, 10 * src]).unsqueeze(-1)  # (2, 5, 1)
    out = seasonal_naive_forecast(batch, 3, 3)
    assert out.shape == (2, 3, 1)
    assert out[1, :, 0].tolist() == [30.0, 40.0, 50.0]
    with pytest.raises(ValueError, match="context_len=5 < season=6"):
        seasonal_naive_forecast(src, 2, 6)


def test_seasonal_naive_is_exact_on_a_periodic_series_mase_zero():
    season, context, horizon = 12, 36, 18
    train = _periodic(240, season, noise=0.1)  # noisy training series: a positive MASE scale
    clean = _periodic(400, season)
    windows = torch.stack(
        [clean[t - context : t] for t in range(context, 400 - horizon)]
    ).unsqueeze(-1)
    targets = torch.stack(
        [clean[t : t + horizon] for t in range(context, 400 - horizon)]
    ).unsqueeze(-1)
    pred = seasonal_naive_forecast(windows, horizon, season)
    assert torch.allclose(pred, targets, atol=1e-9)
    assert mase(targets, pred, train, season) == pytest.approx(0.0, abs=1e-8)
    naive = naive_forecast(windows, horizon)
    assert mase(targets, naive, train, season) > 1.0


def test_mase_formula_by_hand():
    train = torch.tensor([1.0, 3.0, 2.0, 5.0])  # season 1: |2| + |1| + |3| -> scale 2
    assert seasonal_naive_scale(train, 1) == pytest.approx(2.0)
    y, y_hat = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 5.0])  # MAE 2
    assert mase(y, y_hat, train, 1) == pytest.approx(1.0)
    assert mase(y, y_hat, scale=4.0) == pytest.approx(0.5)
    # Scale-free: the same ratio in other units.
    assert mase(3 * y + 7, 3 * y_hat + 7, 3 * train + 7, 1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="constant"):
        mase(y, y_hat, torch.ones(5), 1)


@pytest.mark.parametrize(
    "name, season, context, horizon",
    [("forecast-sunspots", 11, 33, 11), ("forecast-co2", 12, 36, 12)],
)
def test_forecast_task_windows_splits_and_batches(name, season, context, horizon):
    task = get_task(name)
    assert task.kind == "forecast" and task.src_tokenizer is None
    meta = task.metadata
    assert meta["season"] == season and (meta["context_len"], meta["horizon"]) == (context, horizon)
    assert task.split_sizes() == task_sizes(name)  # the cheap sizes match the built task
    bounds = meta["split_bounds"]
    parts = {"train": (0, bounds["train_end"]), "valid": (bounds["train_end"], bounds["valid_end"]),
             "test": (bounds["valid_end"], bounds["n"])}  # fmt: skip
    raw = meta["raw_series"]
    for split, ds in task.splits.items():
        lo, hi = parts[split]
        for t in ds.target_starts:
            assert lo <= t and t + horizon <= hi  # targets never cross a split boundary
            if split == "train":
                assert t - context >= 0
    # Training windows only see training values; normalisation uses training statistics.
    train_values = raw[: bounds["train_end"]]
    assert meta["mean"] == pytest.approx(float(train_values.mean()))
    ex = task.splits["test"][3]
    assert ex["src"].shape == (context, 1) and ex["tgt"].shape == (horizon, 1)
    t = task.splits["test"].target_starts[3]
    denorm = ex["tgt"].squeeze(-1).double() * meta["std"] + meta["mean"]
    assert torch.allclose(denorm, raw[t : t + horizon], rtol=1e-5)
    batch = task.collate_fn([task.splits["train"][i] for i in range(5)])
    assert batch["src"].shape == (5, context, 1) and batch["tgt"].shape == (5, horizon, 1)
    assert batch["src"].dtype == torch.float32 and batch["index"].tolist() == list(range(5))
    assert not torch.isnan(raw).any()
    # The stored MASE scale is the training series' seasonal-naive MAE, in normalised units.
    normalised_train = (train_values - meta["mean"]) / meta["std"]
    assert meta["mase_scale"] == pytest.approx(
        seasonal_naive_scale(normalised_train, season), rel=1e-5
    )


def test_forecast_options_are_checked():
    with pytest.raises(ValueError, match="context_len=5 is shorter than the season"):
        get_task("forecast-sunspots", context_len=5)
    with pytest.raises(ValueError, match="holds no window"):
        get_task("forecast-sunspots", context_len=40, horizon=40)
    small = get_task("forecast-co2", context_len=24, horizon=6, stride=3)
    assert small.splits["train"].target_starts[:3] == [24, 27, 30]


class _SeasonalNaive(torch.nn.Module):
    """A 'model' that is the seasonal-naive baseline (on normalised values)."""

    def __init__(self, horizon, season):
        super().__init__()
        self.horizon, self.season = horizon, season

    def forward(self, src):
        return seasonal_naive_forecast(src, self.horizon, self.season)


def test_evaluate_forecaster_streams_metrics_in_original_units():
    task = get_task("forecast-sunspots")
    meta = task.metadata
    model = _SeasonalNaive(meta["horizon"], meta["season"]).train()
    metrics = evaluate_forecaster(model, task, task.loader("test", batch_size=5))
    assert model.training  # mode restored
    assert metrics["mase"] == pytest.approx(metrics["seasonal_naive_mase"], rel=1e-9)
    assert metrics["mae"] == pytest.approx(metrics["seasonal_naive_mae"], rel=1e-9)
    # The same numbers computed in one go, in raw units.
    ds = task.splits["test"]
    raw = meta["raw_series"]
    src = torch.stack([raw[t - meta["context_len"] : t] for t in ds.target_starts]).unsqueeze(-1)
    tgt = torch.stack([raw[t : t + meta["horizon"]] for t in ds.target_starts]).unsqueeze(-1)
    naive = naive_forecast(src, meta["horizon"])  # (windows, horizon, 1)
    assert metrics["naive_mae"] == pytest.approx(float((naive - tgt).abs().mean()), rel=1e-6)
    expected = mase(tgt, naive, raw[: meta["split_bounds"]["train_end"]], meta["season"])
    assert metrics["naive_mase"] == pytest.approx(expected, rel=1e-6)
    assert metrics["naive_mase"] == pytest.approx(2.643, abs=1e-3)  # the number in docs/data.md
    assert metrics["mse"] >= metrics["mae"] ** 2 - 1e-9  # Jensen
