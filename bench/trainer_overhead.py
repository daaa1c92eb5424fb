"""Trainer overhead: the same models trained by a hand-written PyTorch loop and by `Trainer`.

Runs alternate (hand, trainer, hand, trainer, ...) in one process so machine noise hits both
alike; the reported figure is the ratio of median epoch times, Trainer / hand loop (target <= 1.03).

    python bench/trainer_overhead.py            # full run
    python bench/trainer_overhead.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig


def mlp_case(n: int) -> tuple[nn.Module, DataLoader, nn.Module]:
    """An MLP regression problem."""
    x, y = torch.randn(n, 256), torch.randn(n, 1)
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 1))
    return model, DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True), nn.MSELoss()


class TinyTransformer(nn.Module):
    """A small Transformer encoder classifier over token ids."""

    def __init__(self, vocab: int = 1000, d_model: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))


def transformer_case(n: int) -> tuple[nn.Module, DataLoader, nn.Module]:
    """A small Transformer classification problem."""
    x, y = torch.randint(0, 1000, (n, 32)), torch.randint(0, 10, (n,))
    return TinyTransformer(), DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), nn.CrossEntropyLoss()


def hand_loop(model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> float:
    """One epoch of the textbook loop; returns seconds."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)  # as OptimizerConfig defaults
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def trainer_loop(model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> float:
    """One epoch through Trainer.fit with progress off; returns seconds."""
    config = TrainingConfig(epochs=1, progress_bar=False, optimizer=OptimizerConfig("AdamW", lr=1e-3), log_frequency=50)
    trainer = Trainer(model, config, loader, loss_fn=loss_fn)
    trainer.progress.end_epoch = lambda metrics: None  # keep the benchmark's output to its table
    start = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - start


def measure(name: str, make_case, n: int, rounds: int) -> float:
    """Interleaved rounds; prints and returns the median ratio Trainer / hand loop."""
    torch.manual_seed(0)
    model, loader, loss_fn = make_case(n)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hand_loop(model, loader, loss_fn)  # warm-up (allocator, kernels)
    hand, ours = [], []
    for _ in range(rounds):
        model.load_state_dict(state)
        hand.append(hand_loop(model, loader, loss_fn))
        model.load_state_dict(state)
        ours.append(trainer_loop(model, loader, loss_fn))
    ratio = statistics.median(o / h for o, h in zip(ours, hand, strict=True))
    print(f"{name:12s} hand {statistics.median(hand):7.3f}s  trainer {statistics.median(ours):7.3f}s  ratio {ratio:.3f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples and rounds (smoke test)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, rounds = (512, 2) if args.quick else (8192, 7)
    print(f"torch {torch.__version__}, {args.threads} threads, {rounds} interleaved rounds (median of per-round ratios)")
    measure("mlp", mlp_case, n, rounds)
    measure("transformer", transformer_case, n // 4, rounds)


if __name__ == "__main__":
    main()
