"""Trains a saved tiny transformers model through Seq2SeqTrainer; optionally SIGKILLs itself; resumes.

python hf_resume_worker.py MODEL_DIR TASK RUN_DIR [--kill-at-step N] [--resume] [--lora q_proj,v_proj]
"""

import argparse
import os
import signal
import sys

import torch

from treadmill import OptimizerConfig, TrainingConfig
from treadmill.callbacks import Callback
from treadmill.hf import load_pretrained
from treadmill.seq2seq.trainer import Seq2SeqConfig, Seq2SeqTrainer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from copy_task import copy_batches  # noqa: E402


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_start(self, trainer, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("task")
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--lora", help="comma-separated target modules: train LoRA adapters only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_pretrained(args.model_dir, task=args.task)  # dropout on: the RNG must resume too
    if args.lora:
        from treadmill.peft import apply_lora

        torch.manual_seed(0)  # A's random init, as `treadmill train` seeds the model's (seed_model_init)
        apply_lora(model, r=2, alpha=4, dropout=0.1, target_modules=args.lora.split(","))
    batches = copy_batches(n_batches=4, batch=4, vocab=20, max_len=5)
    if args.task == "causal-lm":
        batches = [{"src": None, "tgt": b["tgt"], "index": b["index"]} for b in batches]
        batches = [{k: v for k, v in b.items() if v is not None} for b in batches]
    config = TrainingConfig(
        epochs=2,
        seed=3,
        progress_bar=False,
        checkpoint_dir=os.path.join(args.run_dir, "ckpt"),
        checkpoint_every_n_steps=1,
        optimizer=OptimizerConfig("AdamW", lr=1e-2),
    )
    callbacks = [KillAt(args.kill_at_step)] if args.kill_at_step is not None else []
    trainer = Seq2SeqTrainer(model, config, batches, seq2seq=Seq2SeqConfig(label_smoothing=0.0),
                             callbacks=callbacks)
    trainer.print_report = False
    trainer.fit(resume_from="last" if args.resume else None)
    torch.save(dict(model.state_dict()), os.path.join(args.run_dir, "final.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
