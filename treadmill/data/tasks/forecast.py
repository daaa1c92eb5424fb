"""Forecasting tasks on statsmodels' bundled series, with naive baselines and MASE.

forecast-sunspots: yearly sunspot numbers 1700-2008 (309 values), season 11.
forecast-co2: Mauna Loa CO2, weekly 1958-2001 resampled to monthly means, gaps linearly
interpolated (526 values), season 12.

Split (chronological): the series is cut at 80% and 90%. A window is `context_len` past values
(src) and the next `horizon` values (tgt); it belongs to the split that holds its whole target.
Training windows lie entirely in the training part. A valid/test window's context may reach back
into the part before it: those values are the known past at forecast time, and sunspots' 31-value
test part could not otherwise hold one full window. No target value is ever in two splits.
Values are normalised with the training part's mean and std (metadata "mean"/"std"; raw =
normalised * std + mean).

MASE (Hyndman & Koehler 2006), with season m and training series y_1..y_n:
    MASE = mean |y_true - y_pred|  /  ( 1/(n-m) * sum_{t=m+1..n} |y_t - y_{t-m}| )
The denominator is the in-sample MAE of the seasonal-naive forecast on the training series, so
MASE < 1 beats that baseline's in-sample error. It is scale-free: compute it in raw or in
normalised units, as long as y_true, y_pred and the training series use the same ones.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from treadmill.data.collate import collate_forecast
from treadmill.data.tasks.base import Task

__all__ = [
    "ForecastDataset",
    "collate_forecast",
    "naive_forecast",
    "seasonal_naive_forecast",
    "mase",
    "seasonal_naive_scale",
    "load_series",
    "evaluate_forecaster",
]

SERIES: dict[str, dict[str, Any]] = {
    "sunspots": {"season": 11, "frequency": "yearly", "context_len": 33, "horizon": 11},
    "co2": {"season": 12, "frequency": "monthly", "context_len": 36, "horizon": 12},
}
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


class ForecastDataset(Dataset):
    """Windows of one normalised series: {"src": (context_len, 1), "tgt": (horizon, 1), "index"}."""

    def __init__(
        self, series: Tensor, context_len: int, horizon: int, target_starts: list[int]
    ) -> None:
        self.series = series  # (time,) float32, normalised
        self.context_len = context_len
        self.horizon = horizon
        # target_starts[i] = position in `series` of window i's first target value.
        self.target_starts = target_starts

    def __len__(self) -> int:
        return len(self.target_starts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        t = self.target_starts[index]
        return {
            "src": self.series[t - self.context_len : t].unsqueeze(-1),  # (context_len, 1)
            "tgt": self.series[t : t + self.horizon].unsqueeze(-1),  # (horizon, 1)
            "index": index,
        }

    def lengths(self) -> list[int]:
        """Every window has the same width (for samplers that expect lengths)."""
        return [max(self.context_len, self.horizon)] * len(self)


def load_series(name: str) -> Tensor:
    """The raw series `name` ("sunspots" or "co2") as a float64 tensor (time,), from statsmodels."""
    from statsmodels import datasets

    if name == "sunspots":
        values = datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    elif name == "co2":
        weekly = datasets.co2.load_pandas().data["co2"]
        # Month-start means; weeks with no reading are NaN and months without any are interpolated.
        values = weekly.resample("MS").mean().interpolate(method="linear").to_numpy()
    else:
        raise ValueError(f"unknown series {name!r}; expected one of {sorted(SERIES)}.")
    series = torch.tensor(values, dtype=torch.float64)  # copies the read-only pandas buffer
    if torch.isnan(series).any():
        raise RuntimeError(f"series {name!r} still has NaN values after interpolation.")
    return series


def _split_bounds(n: int) -> tuple[int, int]:
    """End (exclusive) of the train and valid parts."""
    return int(n * SPLIT_FRACTIONS[0]), int(n * (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]))


def _target_starts(n: int, context_len: int, horizon: int, stride: int) -> dict[str, list[int]]:
    train_end, valid_end = _split_bounds(n)
    parts = {"train": (0, train_end), "valid": (train_end, valid_end), "test": (valid_end, n)}
    # A target starting at t needs t - context_len >= 0 and t + horizon <= part end.
    return {
        split: list(range(max(lo, context_len), hi - horizon + 1, stride))
        for split, (lo, hi) in parts.items()
    }


def _check(name: str, context_len: int, horizon: int, stride: int, season: int) -> None:
    if context_len < season:
        raise ValueError(
            f"task {name!r}: context_len={context_len} is shorter than the season ({season}); "
            f"the seasonal-naive baseline needs context_len >= {season}."
        )
    if horizon < 1 or stride < 1:
        raise ValueError(
            f"task {name!r}: horizon and stride must be >= 1, got {horizon}, {stride}."
        )


def _build(series_name: str, context_len: int | None, horizon: int | None, stride: int) -> Task:
    info = SERIES[series_name]
    name = f"forecast-{series_name}"
    context_len = info["context_len"] if context_len is None else context_len
    horizon = info["horizon"] if horizon is None else horizon
    _check(name, context_len, horizon, stride, info["season"])
    raw = load_series(series_name)
    train_end, valid_end = _split_bounds(len(raw))
    mean, std = float(raw[:train_end].mean()), float(raw[:train_end].std())
    normalised = ((raw - mean) / std).to(torch.float32)
    starts = _target_starts(len(raw), context_len, horizon, stride)
    for split, s in starts.items():
        if not s:
            raise ValueError(
                f"task {name!r}: split {split!r} holds no window with context_len={context_len}, "
                f"horizon={horizon}; shorten them."
            )
    season = info["season"]
    return Task(
        name=name,
        description=_DESCRIPTIONS[series_name],
        splits={s: ForecastDataset(normalised, context_len, horizon, starts[s]) for s in starts},
        src_tokenizer=None,
        tgt_tokenizer=None,
        kind="forecast",
        collate_fn=collate_forecast,
        evaluate_model=evaluate_forecaster,
        metadata={
            "mean": mean,
            "std": std,
            "season": season,
            "frequency": info["frequency"],
            "context_len": context_len,
            "horizon": horizon,
            "split_bounds": {"train_end": train_end, "valid_end": valid_end, "n": len(raw)},
            "raw_series": raw,
            # MASE denominators for targets in normalised and in raw units.
            "mase_scale": seasonal_naive_scale(normalised[:train_end], season),
            "mase_scale_raw": seasonal_naive_scale(raw[:train_end], season),
        },
    )


SUNSPOTS_DESCRIPTION = "Yearly sunspot numbers 1700-2008 (statsmodels): past values -> next values."
CO2_DESCRIPTION = (
    "Mauna Loa CO2, monthly means 1958-2001 (statsmodels): past values -> next values."
)
_DESCRIPTIONS = {"sunspots": SUNSPOTS_DESCRIPTION, "co2": CO2_DESCRIPTION}


def build_forecast_sunspots(
    *, context_len: int | None = None, horizon: int | None = None, stride: int = 1
) -> Task:
    """Sunspots windows; defaults context_len 33 (three cycles), horizon 11."""
    return _build("sunspots", context_len, horizon, stride)


def build_forecast_co2(
    *, context_len: int | None = None, horizon: int | None = None, stride: int = 1
) -> Task:
    """CO2 windows; defaults context_len 36 (three years), horizon 12."""
    return _build("co2", context_len, horizon, stride)


def _sizes(
    series_name: str, context_len: int | None, horizon: int | None, stride: int
) -> dict[str, int]:
    n = {"sunspots": 309, "co2": 526}[series_name]  # fixed by the bundled data; tested
    info = SERIES[series_name]
    context_len = info["context_len"] if context_len is None else context_len
    horizon = info["horizon"] if horizon is None else horizon
    return {s: len(v) for s, v in _target_starts(n, context_len, horizon, stride).items()}


def sunspots_sizes(
    *, context_len: int | None = None, horizon: int | None = None, stride: int = 1
) -> dict[str, int]:
    """Window counts per split, without loading the data."""
    return _sizes("sunspots", context_len, horizon, stride)


def co2_sizes(
    *, context_len: int | None = None, horizon: int | None = None, stride: int = 1
) -> dict[str, int]:
    """Window counts per split, without loading the data."""
    return _sizes("co2", context_len, horizon, stride)


def _as_time_major(src: Tensor) -> Tensor:
    """View a 1-D (context_len,) series as (context_len, 1); keep (..., context_len, features)."""
    return src.unsqueeze(-1) if src.dim() == 1 else src


def naive_forecast(src: Tensor, horizon: int) -> Tensor:
    """Repeat the last observed value: src (..., context_len, F) -> (..., horizon, F)."""
    src = _as_time_major(src)
    last = src[..., -1:, :]  # (..., 1, F)
    return last.expand(*src.shape[:-2], horizon, src.shape[-1]).clone()


def seasonal_naive_forecast(src: Tensor, horizon: int, season: int) -> Tensor:
    """Repeat the last full season: y_hat[T+h] = y[T+h - m*ceil(h/m)]; (..., C, F) -> (..., horizon, F)."""
    src = _as_time_major(src)
    context_len = src.shape[-2]
    if context_len < season:
        raise ValueError(
            f"seasonal_naive_forecast: context_len={context_len} < season={season}; "
            "the window must hold at least one full season."
        )
    # Position of y[T+h - m*ceil(h/m)] in the window, for h = 1..horizon.
    idx = torch.tensor([context_len - season + (h - 1) % season for h in range(1, horizon + 1)])
    return src.index_select(-2, idx.to(src.device))


def seasonal_naive_scale(train_series: Tensor, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast on the training series (MASE denominator)."""
    train_series = train_series.reshape(-1).to(torch.float64)
    if len(train_series) <= season:
        raise ValueError(
            f"seasonal_naive_scale: the training series ({len(train_series)} values) must be longer "
            f"than the season ({season})."
        )
    return float((train_series[season:] - train_series[:-season]).abs().mean())


def mase(
    y_true: Tensor,
    y_pred: Tensor,
    train_series: Tensor | None = None,
    season: int = 1,
    scale: float | None = None,
) -> float:
    """Mean absolute scaled error: mean|y_true - y_pred| / seasonal_naive_scale(train_series, season).

    Pass `scale` (e.g. task.metadata["mase_scale"]) instead of `train_series` to reuse it.
    """
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"mase: y_true {tuple(y_true.shape)} and y_pred {tuple(y_pred.shape)} differ in shape."
        )
    if scale is None:
        if train_series is None:
            raise ValueError("mase: pass train_series (with season) or a precomputed scale.")
        scale = seasonal_naive_scale(train_series, season)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"mase: the scale must be positive and finite, got {scale}; the training series is constant."
        )
    mae = (y_true.to(torch.float64) - y_pred.to(torch.float64)).abs().mean()
    return float(mae) / scale


@torch.no_grad()
def evaluate_forecaster(
    model: torch.nn.Module, task: Task, loader: Any, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """MSE, MAE and MASE of `model` and MAE/MASE of the naive and seasonal-naive baselines.

    All in original units (de-normalised with the task's mean/std); MASE uses the training series'
    seasonal-naive scale. `model(src)` maps (B, context_len, 1) to (B, horizon, 1). Errors are
    summed batch by batch, so nothing but the running sums is kept.
    """
    meta = task.metadata
    mean, std, season, horizon = meta["mean"], meta["std"], meta["season"], meta["horizon"]
    was_training = model.training
    model.eval()
    sums = {"sq": 0.0, "abs": 0.0, "naive": 0.0, "seasonal_naive": 0.0}
    count = 0
    try:
        for batch in loader:
            src = batch["src"].to(device)  # (B, context_len, 1), normalised
            tgt = batch["tgt"].to(device).double() * std + mean  # (B, horizon, 1), raw
            pred = model(src).double() * std + mean
            raw_src = src.double() * std + mean
            sums["sq"] += float(((pred - tgt) ** 2).sum())
            sums["abs"] += float((pred - tgt).abs().sum())
            sums["naive"] += float((naive_forecast(raw_src, horizon) - tgt).abs().sum())
            seasonal = seasonal_naive_forecast(raw_src, horizon, season)
            sums["seasonal_naive"] += float((seasonal - tgt).abs().sum())
            count += tgt.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"evaluate_forecaster: the loader for task {task.name!r} is empty.")
    scale = meta["mase_scale_raw"]
    mae = sums["abs"] / count
    return {
        "mse": sums["sq"] / count,
        "mae": mae,
        "mase": mae / scale,
        "naive_mae": sums["naive"] / count,
        "naive_mase": sums["naive"] / count / scale,
        "seasonal_naive_mae": sums["seasonal_naive"] / count,
        "seasonal_naive_mase": sums["seasonal_naive"] / count / scale,
    }
