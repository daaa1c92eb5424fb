"""A sequence-to-sequence regressor for forecasting: past values in, the next `horizon` out."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from treadmill.nn.dropout import Dropout

__all__ = ["Forecaster", "ForecasterConfig"]

WINDOW_NORMS = ("none", "mean", "meanstd")


@dataclass
class ForecasterConfig:
    """Size of the forecaster: a GRU over the context window, an MLP head to all horizons at once."""

    context_len: int
    horizon: int
    n_features: int = 1
    hidden_dim: int = 64
    n_layers: int = 2
    dropout: float = 0.1
    # "none": use the values as given. "mean": subtract each window's mean and add it back to
    # the forecast. "meanstd": also divide by the window's std (reversible instance
    # normalisation, Kim et al. 2022, "RevIN"). Level and scale that drift between the training
    # years and the test years (a rising CO2 trend, stronger sunspot cycles) then stop being
    # out-of-distribution inputs.
    window_norm: str = "none"

    def __post_init__(self) -> None:
        if self.window_norm not in WINDOW_NORMS:
            raise ValueError(f"window_norm must be one of {WINDOW_NORMS}, got {self.window_norm!r}.")


class Forecaster(nn.Module):
    """Direct multi-horizon forecaster: GRU encoder + linear skip from the raw window + MLP head.

    The linear skip lets the model start as a (learned) linear autoregression, which is already a
    strong baseline on smooth series; the GRU adds what is non-linear.
    """

    is_encoder_decoder = False

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.gru = nn.GRU(
            config.n_features,
            config.hidden_dim,
            config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(
            nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.GELU(),
            Dropout(config.dropout),
            nn.Linear(config.hidden_dim, config.horizon * config.n_features),
        )
        self.skip = nn.Linear(
            config.context_len * config.n_features, config.horizon * config.n_features
        )

    def forward(self, src: Tensor) -> Tensor:
        """(batch, context_len, n_features) past values -> (batch, horizon, n_features) forecasts."""
        batch = src.size(0)
        norm = self.config.window_norm
        if norm != "none":
            level = src.mean(dim=1, keepdim=True)
            scale = src.std(dim=1, keepdim=True).clamp_min(1e-3) if norm == "meanstd" else None
            src = src - level if scale is None else (src - level) / scale
        _, hidden = self.gru(src)  # hidden: (n_layers, batch, hidden_dim)
        out = self.head(hidden[-1]) + self.skip(
            src.reshape(batch, -1)
        )  # (batch, horizon * n_features)
        out = out.view(batch, self.config.horizon, self.config.n_features)
        if norm == "none":
            return out
        return out + level if scale is None else out * scale + level
