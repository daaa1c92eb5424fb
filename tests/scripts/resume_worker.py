"""A training program for the resume tests: trains, optionally kills itself, writes final weights.

python resume_worker.py RUN_DIR [--kill-at-step N] [--kill-during-save N] [--workers W] [--resume]
"""

import argparse
import os
import signal
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from treadmill import OptimizerConfig, SchedulerConfig, Trainer, TrainingConfig
from treadmill.callbacks import Callback


class NoisyData(Dataset):
    """Samples that draw from torch's RNG in __getitem__ (as augmentation does), in workers too."""

    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 8, generator=g)
        self.y = torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] + 0.01 * torch.randn(8), self.y[i]


def build(workers: int):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
    loader = DataLoader(NoisyData(), batch_size=8, shuffle=True, num_workers=workers)
    return model, loader


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_start(self, trainer, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_start(self, trainer, batch, batch_idx):
        if trainer.global_step == self.step and batch_idx % 2 == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # mid accumulation group (accumulation 2)


def crash_during_save(nth: int) -> None:
    """Make the nth checkpoint write die half-way, as a SIGKILL during torch.save would."""
    import treadmill.checkpoint as checkpoint

    real_save, count = checkpoint.torch.save, [0]

    def save(obj, handle, *args, **kwargs):
        count[0] += 1
        if count[0] == nth:
            handle.write(b"PK\x03\x04 partial checkpoint")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, handle, *args, **kwargs)

    checkpoint.torch.save = save


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--sigterm-at-step", type=int)
    parser.add_argument("--kill-during-save", type=int)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, loader = build(args.workers)
    callbacks = []
    if args.kill_at_step is not None:
        callbacks.append(KillAt(args.kill_at_step))
    if args.sigterm_at_step is not None:
        callbacks.append(SignalAt(args.sigterm_at_step))
    if args.kill_during_save is not None:
        crash_during_save(args.kill_during_save)
    config = TrainingConfig(
        epochs=args.epochs,
        seed=7,
        progress_bar=False,
        gradient_accumulation_steps=2 if args.sigterm_at_step is not None else 1,
        checkpoint_dir=os.path.join(args.run_dir, "ckpt"),
        checkpoint_every_n_steps=1,
        optimizer=OptimizerConfig("AdamW", lr=1e-2),
        scheduler=SchedulerConfig("warmup_cosine", params={"warmup_steps": 5}),
    )
    trainer = Trainer(model, config, loader, loss_fn=nn.MSELoss(), callbacks=callbacks)
    trainer.fit(resume_from="last" if args.resume else None)
    torch.save(
        {k: v for k, v in model.state_dict().items()}, os.path.join(args.run_dir, "final.pt")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
