"""One-line, human-readable summaries of a split's metrics, for the end of `treadmill train` and `eval`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["headline", "spread_rows", "print_samples"]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def headline(split: str, metrics: Mapping[str, float], n_examples: int | None = None) -> str:
    """The figures a reader looks for first: MASE against the baselines for forecasts, WER/PER
    (with and without stress) for G2P, exact match and BLEU for other sequence tasks."""
    if "mase" in metrics:
        parts = [f"MASE {metrics['mase']:.3f} (seasonal-naive {metrics['seasonal_naive_mase']:.3f}, "
                 f"naive {metrics['naive_mase']:.3f})", f"MAE {metrics['mae']:.4g}"]
    elif "bits_per_char" in metrics:  # language models
        parts = [f"loss {metrics['loss']:.4f} nats/token", f"perplexity {metrics['perplexity']:.2f}",
                 f"{metrics['bits_per_char']:.4f} bits/char"]
    elif "wer_nostress" in metrics:
        parts = [f"WER {_percent(metrics['wer'])}  PER {_percent(metrics['per'])} with stress",
                 f"WER {_percent(metrics['wer_nostress'])}  PER {_percent(metrics['per_nostress'])} without",
                 f"exact match {_percent(metrics['exact_match'])}"]
    elif "exact_match" in metrics:
        parts = [f"exact match {_percent(metrics['exact_match'])}"]
        parts += [f"{name} {metrics[name]:.1f}" for name in ("bleu", "chrf") if name in metrics]
    else:
        parts = [f"{name} {value:.4g}" for name, value in metrics.items() if isinstance(value, float)]
    size = f" ({n_examples:,} examples)" if n_examples is not None else ""
    return f"{split}{size}: " + ";  ".join(parts)


def spread_rows(n_rows: int, n_samples: int) -> set[int]:
    """`n_samples` row indices spread evenly over `n_rows`, so printed samples are not just the
    first rows (in a sorted dictionary, the abbreviations at the top of the alphabet)."""
    if n_samples <= 0 or n_rows <= 0:
        return set()
    n_samples = min(n_samples, n_rows)
    return {(k * n_rows) // n_samples for k in range(n_samples)}


def print_samples(split: str, samples: list[tuple[int, bool, str, str, str]], reachable: int,
                  options: Mapping[str, Any]) -> None:
    """The sample predictions of a split, in row order, each marked right (✓) or wrong (✗)."""
    if not samples:
        return
    strategy = options.get("strategy", "greedy")
    if strategy == "beam":
        strategy = f"beam {options.get('beam_size', '')}".strip()
    print(f"{split} samples, {len(samples)} spread over {reachable:,} rows ({strategy} decoding):", flush=True)
    for _, right, source, reference, hypothesis in sorted(samples):
        print(f"  {'✓' if right else '✗'} {source!r:28} ref {reference!r:40} hyp {hypothesis!r}", flush=True)
