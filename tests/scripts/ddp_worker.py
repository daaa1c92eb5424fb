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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
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
    )
    trainer = Trainer(model, config, loader, loader, loss_fn=nn.MSELoss())
    history = trainer.fit(resume_from="last" if args.resume else None)
    rank = int(os.environ.get("RANK", 0))
    torch.save(
        {
            "weights": {k: v.clone() for k, v in model.state_dict().items()},
            "val_loss": history["val_loss"],
            "world": trainer.dist.world_size,
        },
        os.path.join(args.out, f"rank{rank}.pt"),
    )
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
