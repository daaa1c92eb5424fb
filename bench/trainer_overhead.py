"""Trainer overhead: the same models trained by a hand-written loop, by `Trainer` and by Lightning.

Each contender trains the same model (reset to the same weights), on the same DataLoader, with
the same loss and AdamW(lr 1e-3, weight decay 0) for one epoch; progress bars, logging and
checkpointing are off in all three, so what differs is the framework's own per-step work. Lightning
wraps the model in a LightningModule (training_step returns the loss; configure_optimizers the same
AdamW) and runs `lightning.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)`. Only the
`fit` call is timed for both frameworks (building the trainer object is not).

Runs alternate within each round (hand, Treadmill, Lightning, then the reverse order in the next
round) in one process so machine noise hits all alike; the reported figures are medians of the
per-round ratios to the hand loop: Treadmill / hand (target <= 1.03) and Lightning / hand, and
whether Treadmill is below Lightning. Lightning is optional (`pip install -e .[bench]`); without
it the third column is skipped.

    .venv/bin/python bench/trainer_overhead.py --threads 1   # full run, ~3-4 minutes on 1 core
    .venv/bin/python bench/trainer_overhead.py --quick       # a smoke run, ~15 s
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from peers import print_machine, verdict
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


def lightning_loop(model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> float:
    """One epoch through lightning.Trainer.fit with progress, logging and checkpoints off; seconds."""
    import lightning as L

    class Wrapped(L.LightningModule):
        """The same model, loss and optimizer as a LightningModule."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return loss_fn(self.model(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.0)

    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    module = Wrapped()
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - start


def lightning_available() -> bool:
    """Whether the optional `lightning` package imports; quiets its info lines and hints if so."""
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    # Lightning prints device summaries and a "few workers" hint per fit: not part of the table.
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a torch deprecation inside Lightning
    return True


Case = tuple[nn.Module, DataLoader, nn.Module]
Loop = Callable[[nn.Module, DataLoader, nn.Module], float]


def measure(
    name: str, make_case: Callable[[int], Case], n: int, rounds: int, contenders: dict[str, Loop]
) -> dict[str, float]:
    """Interleaved rounds; prints and returns the median per-round ratio of each contender to hand."""
    torch.manual_seed(0)
    model, loader, loss_fn = make_case(n)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for run in contenders.values():  # warm-up (allocator, kernels, lazy imports), untimed
        model.load_state_dict(state)
        run(model, loader, loss_fn)
    seconds: dict[str, list[float]] = {k: [] for k in contenders}
    order = list(contenders)
    for r in range(rounds):
        # Reversed order every other round: no contender always runs right after another.
        for key in order if r % 2 == 0 else reversed(order):
            model.load_state_dict(state)
            seconds[key].append(contenders[key](model, loader, loss_fn))
    ratios = {
        k: statistics.median(o / h for o, h in zip(seconds[k], seconds["hand"], strict=True))
        for k in contenders
        if k != "hand"
    }
    times = "  ".join(f"{k} {statistics.median(v):7.3f}s" for k, v in seconds.items())
    shown = "  ".join(f"{k}/hand {r:.3f}" for k, r in ratios.items())
    print(f"{name:12s} {times}  {shown}")
    return ratios


def main() -> None:
    """Parse options, time every case, print the ratios and which targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples and rounds (smoke test)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, rounds = (512, 2) if args.quick else (8192, 7)
    contenders = {"hand": hand_loop, "treadmill": trainer_loop}
    if lightning_available():
        contenders["lightning"] = lightning_loop
    print_machine()
    print(f"{rounds} interleaved rounds (median of per-round ratios to the hand loop)")
    if "lightning" not in contenders:
        print("lightning is not installed (pip install -e .[bench]): its column is skipped")
    results = {
        "mlp": measure("mlp", mlp_case, n, rounds, contenders),
        "transformer": measure("transformer", transformer_case, n // 4, rounds, contenders),
    }
    for case, ratios in results.items():
        verdict(f"{case} Treadmill/hand", ratios["treadmill"], 1.03, higher_is_better=False)
        if "lightning" in ratios:
            below = ratios["treadmill"] < ratios["lightning"]
            print(
                f"{case}: Treadmill {'below' if below else 'NOT below'} Lightning "
                f"({ratios['treadmill']:.3f} vs {ratios['lightning']:.3f} of the hand loop)"
            )


if __name__ == "__main__":
    main()
