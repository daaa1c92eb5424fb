"""Training program for the FSDP tests; run it with torchrun, or as one process with --strategy ddp.

torchrun --standalone --nproc_per_node=2 fsdp_worker.py OUT --model gpt --batch-size 4
python fsdp_worker.py OUT --model gpt --batch-size 8 --strategy ddp

Each rank writes OUT/rank{R}.pt: the full weights (gathered from the shards), the validation
losses, the world size and the step reached.
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.fsdp import full_model_state
from treadmill.models import GPT, GPTConfig, TransformerSeq2Seq, TransformerSeq2SeqConfig

VOCAB, LENGTH, SAMPLES = 11, 6, 32


class DictDataset(Dataset):
    """Rows of several equally long tensors, as dict batches."""

    def __init__(self, **columns: torch.Tensor) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index: int) -> dict:
        return {name: column[index] for name, column in self.columns.items()}


def token_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position."""
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def build(name: str, layers: int = 2) -> tuple[nn.Module, Dataset, object]:
    """A model (seeded, so every process builds the same one), its data and its loss."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == "mlp":
        x, y = torch.randn(SAMPLES, 5, generator=g), torch.randn(SAMPLES, 1, generator=g)
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)), TensorDataset(x, y), nn.MSELoss()
    tokens = torch.randint(3, VOCAB, (SAMPLES, LENGTH + 1), generator=g)
    if name == "gpt":
        model = GPT(GPTConfig(vocab_size=VOCAB, d_model=16, n_heads=2, n_layers=layers, d_ff=32, max_len=16, dropout=0.0))
        return model, DictDataset(tokens=tokens[:, :-1], target=tokens[:, 1:]), token_loss
    src = torch.randint(3, VOCAB, (SAMPLES, LENGTH), generator=g)
    model = TransformerSeq2Seq(TransformerSeq2SeqConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=16, n_heads=2,
                                                        n_encoder_layers=layers, n_decoder_layers=layers, d_ff=32,
                                                        dropout=0.0, max_len=16))
    return model, DictDataset(src=src, tgt_in=tokens[:, :-1], target=tokens[:, 1:]), token_loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--model", default="mlp", choices=["mlp", "transformer", "gpt"])
    parser.add_argument("--strategy", default="fsdp")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--checkpointing", action="store_true")
    # SGD for the equality tests: Adam divides by the root of tiny second moments, and would
    # amplify float rounding in gradients that are zero in exact arithmetic (attention key biases).
    parser.add_argument("--optimizer", default="SGD")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, data, loss_fn = build(args.model)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False)
    config = TrainingConfig(
        epochs=args.epochs,
        seed=1,
        device="cpu",
        progress_bar=False,
        strategy=args.strategy,
        activation_checkpointing=args.checkpointing,
        gradient_accumulation_steps=args.accumulate,
        max_grad_norm=args.clip,
        max_steps=args.max_steps,
        checkpoint_dir=os.path.join(args.out, "ckpt"),
        optimizer=OptimizerConfig(args.optimizer, lr=0.05 if args.optimizer == "SGD" else 0.01),
        log_frequency=2,
    )
    trainer = Trainer(model, config, loader, loader, loss_fn=loss_fn)
    history = trainer.fit(resume_from="last" if args.resume else None)
    weights = full_model_state(trainer.model)
    rank = int(os.environ.get("RANK", 0))
    torch.save({"weights": weights, "val_loss": history["val_loss"], "world": trainer.dist.world_size,
                "global_step": trainer.global_step, "grad_norm": trainer.last_grad_norm},
               os.path.join(args.out, f"rank{rank}.pt"))
    if dist.is_initialized():
        dist.barrier()  # no rank tears down its connections while another still uses them
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
