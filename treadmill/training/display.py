"""Small display helpers under pytorch-treadmill's names: durations, metrics, the model summary,
and the colour theme of Treadmill's rich output."""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

__all__ = ["COLORS", "format_time", "format_metrics", "format_number", "print_model_summary", "set_color_theme"]

_DEFAULT_COLORS = {
    "header": "#0066FF", "epoch": "#9933CC", "train": "#228B22", "val": "#1E90FF", "metric": "default",
    "improvement": "#228B22", "regression": "#DC143C", "warning": "#FF8C00", "success": "#228B22", "info": "#20B2AA",
}
COLORS: dict[str, str] = dict(_DEFAULT_COLORS)


def set_color_theme(color_dict: dict[str, str] | None = None) -> None:
    """Override colours of the rich output by role ("train", "val", "warning", ...); None restores them."""
    COLORS.clear()
    COLORS.update(_DEFAULT_COLORS)
    if color_dict:
        unknown = sorted(set(color_dict) - set(_DEFAULT_COLORS))
        if unknown:
            raise ValueError(f"set_color_theme: unknown role(s) {unknown}; roles are {sorted(_DEFAULT_COLORS)}.")
        COLORS.update(color_dict)


def format_time(seconds: float) -> str:
    """'42s', '3m 5s' or '2h 0m 7s'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s"


def format_metrics(metrics: dict[str, float], precision: int = 4) -> dict[str, str]:
    """Each metric as a string with `precision` decimals."""
    return {key: f"{value:.{precision}f}" for key, value in metrics.items()}


def format_number(num: float, precision: int = 4) -> str:
    """1.2M, 3.4K, or the number with `precision` decimals."""
    if abs(num) >= 1e6:
        return f"{num / 1e6:.1f}M"
    if abs(num) >= 1e3:
        return f"{num / 1e3:.1f}K"
    return f"{num:.{precision}f}"


def print_model_summary(model: nn.Module, sample_input_shape: tuple[int, ...] | None = None, file: Any = None) -> str:
    """Print (and return) the model's class and total / trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    text = (f"Model: {type(model).__name__}\nTotal Parameters: {total:,}\nTrainable Parameters: {trainable:,}"
            + (f"\nInput shape: {tuple(sample_input_shape)}" if sample_input_shape else ""))
    out = file or sys.stdout
    if getattr(out, "isatty", lambda: False)():
        from rich.console import Console
        from rich.panel import Panel

        Console(file=out).print(Panel(text, title="Model Info", border_style=COLORS["header"]))
    else:
        print(text, file=out)
    return text
