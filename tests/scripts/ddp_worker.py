"""Training program for the DDP tests; run it with torchrun or as a single process.

torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT --batch-size 4
python ddp_worker.py OUT --batch-size 8
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks.base import Callback


class StopOnRankOne(Callback):
    """Asks to stop on rank 1 alone, as an alarm or early stopping seeing only local numbers would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer, batch, batch_idx, loss) -> None:
        if trainer.dist.rank == 1 and trainer.global_step == self.step:
            trainer.should_stop = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-rank1-at-step", type=int, default=None)
    parser.add_argument("--log-frequency", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randn(64, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=False)
    config = TrainingConfig(
        epochs=args.epochs,
        seed=1,
        progress_bar=False,
        gradient_accumulation_steps=args.accumulate,
        checkpoint_dir=os.path.join(args.out, "ckpt"),
        optimizer=OptimizerConfig("SGD", lr=0.05),
        log_frequency=args.log_frequency,
    )
    callbacks = [StopOnRankOne(args.stop_rank1_at_step)] if args.stop_rank1_at_step else []
    trainer = Trainer(model, config, loader, loader, loss_fn=nn.MSELoss(), callbacks=callbacks)
    history = trainer.fit(resume_from="last" if args.resume else None)
    rank = int(os.environ.get("RANK", 0))
    torch.save(
        {
            "weights": {k: v.clone() for k, v in model.state_dict().items()},
            "val_loss": history["val_loss"],
            "world": trainer.dist.world_size,
            "global_step": trainer.global_step,
        },
        os.path.join(args.out, f"rank{rank}.pt"),
    )
    if dist.is_initialized():
        dist.barrier()  # no rank tears down its connections while another still uses them
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
