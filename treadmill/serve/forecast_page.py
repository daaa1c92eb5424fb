"""The forecaster page's work: one test window's history, forecast and actual values, as a plot."""

from __future__ import annotations

from typing import Any

import torch

from treadmill.serve.servable import Servable

__all__ = ["forecast_figure"]


def forecast_figure(servable: Servable, window: int) -> tuple[Any, str]:
    """(a Figure of window `window`'s history, forecast and actual values in raw units, a summary line)."""
    from matplotlib.figure import Figure

    windows = servable.forecast_windows
    if windows is None or not len(windows):
        raise ValueError("This run has no test windows to forecast.")
    if not 0 <= int(window) < len(windows):
        raise ValueError(f"Window {window} does not exist; choose 0 to {len(windows) - 1}.")
    item = windows[int(window)]
    with torch.inference_mode():
        servable.model.eval()
        forecast = servable.model(item["src"][None].float())[0]  # (horizon, n_features)
    mean, std = servable.forecast_scale
    history, actual = item["src"][:, 0] * std + mean, item["tgt"][:, 0] * std + mean
    predicted = forecast[:, 0] * std + mean
    start = windows.target_starts[int(window)]
    past = list(range(start - len(history), start))
    future = list(range(start, start + len(actual)))
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(past, history.tolist(), label="history", color="tab:blue")
    ax.plot(future, actual.tolist(), label="actual", color="tab:green")
    ax.plot(future, predicted.tolist(), label="forecast", color="tab:orange", linestyle="--", marker="o", markersize=3)
    ax.set_xlabel("time step")
    ax.set_ylabel("value")
    ax.legend()
    mae = float((predicted - actual).abs().mean())
    return fig, f"Window {window}: forecast of {len(actual)} steps from step {start}; MAE {mae:.3f}."
