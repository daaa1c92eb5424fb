"""Diagnostics overhead: the same training run with and without `Diagnostics(every_n_steps=50)`.

Runs alternate (plain, every 50, every 50 + HealthMonitor, every step, plain, ...) in one process
so machine noise hits all alike; the reported figure is the median over rounds of the per-round
ratio of training times, with / without (target <= 1.03). On a shared machine that ratio is within
the noise, so the run sampling EVERY step is there to measure the cost of one sampled step with a
large signal: (ratio_every_step - 1) / 50 is the noise-free estimate of the every-50 overhead.

    python bench/diagnostics_overhead.py            # full run
    python bench/diagnostics_overhead.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks import Callback, Diagnostics, HealthMonitor


class EncoderClassifier(nn.Module):
    """Token ids -> embedding -> 2-layer Transformer `encoder` -> mean pool -> `head`."""

    def __init__(self, vocab: int = 1000, d_model: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 10))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))  # (batch, 10)


def transformer_case(steps: int) -> tuple[nn.Module, DataLoader, nn.Module]:
    x, y = torch.randint(0, 1000, (steps * 32, 32)), torch.randint(0, 10, (steps * 32,))
    return (
        EncoderClassifier(),
        DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True),
        nn.CrossEntropyLoss(),
    )


def mlp_case(steps: int) -> tuple[nn.Module, DataLoader, nn.Module]:
    x, y = torch.randn(steps * 64, 256), torch.randn(steps * 64, 1)
    model = nn.Sequential(
        nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 1)
    )
    return model, DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True), nn.MSELoss()


class Timer(Callback):
    """Wall time from the first batch to the end of training (excludes set-up and validation)."""

    def on_train_start(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer: Trainer) -> None:
        self.seconds = time.perf_counter() - self.start


def train_once(
    model: nn.Module, loader: DataLoader, loss_fn: nn.Module, extra: list[Callback]
) -> float:
    """One epoch through Trainer.fit; returns the seconds spent training."""
    timer = Timer()
    config = TrainingConfig(
        epochs=1, progress_bar=False, optimizer=OptimizerConfig("AdamW", lr=1e-4), log_frequency=50
    )
    trainer = Trainer(model, config, loader, loss_fn=loss_fn, callbacks=[*extra, timer])
    trainer.progress.end_epoch = lambda metrics: None  # keep the output to the table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit()
    return timer.seconds


def measure(name: str, make_case, steps: int, rounds: int, watch: tuple[str, ...]) -> None:
    """Interleaved rounds; prints median times and the median per-round ratios."""
    torch.manual_seed(0)
    model, loader, loss_fn = make_case(steps)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    variants = {
        "plain": lambda: [],
        "diagnostics": lambda: [Diagnostics(every_n_steps=50, watch=watch)],
        "diag+health": lambda: [
            Diagnostics(every_n_steps=50, watch=watch),
            HealthMonitor(print_summary=False),
        ],
        "every-step": lambda: [Diagnostics(every_n_steps=1, watch=watch)],
    }
    train_once(model, loader, loss_fn, [])  # warm-up (allocator, kernels)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant, callbacks in variants.items():
            model.load_state_dict(state)
            times[variant].append(train_once(model, loader, loss_fn, callbacks()))
    plain = times["plain"]
    cells = [f"plain {statistics.median(plain):6.2f}s"]
    ratios = {}
    for variant in ("diagnostics", "diag+health", "every-step"):
        ratios[variant] = statistics.median(
            t / p for t, p in zip(times[variant], plain, strict=True)
        )
        cells.append(
            f"{variant} {statistics.median(times[variant]):6.2f}s (ratio {ratios[variant]:.3f})"
        )
    estimate = 1 + (ratios["every-step"] - 1) / 50
    print(
        f"{name:12s} {steps} steps  "
        + "  ".join(cells)
        + f"  estimated every-50 ratio {estimate:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps and rounds (smoke test)")
    # One thread by default: on a shared machine, oversubscribed threads make timings meaningless.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--case", choices=("transformer", "mlp", "both"), default="both")
    parser.add_argument(
        "--steps", type=int, help="optimizer steps per run (default 200; 100 with --quick)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; 2 with --quick)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, rounds = (100, 2) if args.quick else (200, 5)
    steps, rounds = args.steps or steps, args.rounds or rounds
    print(
        f"torch {torch.__version__}, {args.threads} threads, {rounds} interleaved rounds, Diagnostics every 50 steps"
    )
    if args.case in ("transformer", "both"):
        measure("transformer", transformer_case, steps, rounds, watch=("encoder",))
    if args.case in ("mlp", "both"):
        measure("mlp", mlp_case, steps, rounds, watch=("0",))


if __name__ == "__main__":
    main()
