"""LM training throughput: our Trainer against a hand-written nanoGPT-style loop, same GPT, same data.

nanoGPT's README CPU recipe: 4 layers, 4 heads, d_model 128 (d_ff 512), block 64, batch 12, no
dropout, AdamW(lr 1e-3, betas (0.9, 0.99), weight decay 0.1), gradient clipping at 1.0, warm-up
100 steps then cosine to 1e-4, loss printed every step (--log_interval=1). Both contenders train
that GPT (treadmill.models.GPT, each its own copy from the same initial weights) on windows of the
lm-shakespeare training tokens read through np.memmap:

* hand: nanoGPT's loop: `torch.randint` offsets, `torch.stack` of memmap slices, forward, loss,
  zero_grad, backward, clip, step, the LR set by hand each step, `loss.item()` each step;
* Treadmill: `LanguageModelTrainer(...).fit()` with max_steps, a TokenFileDataset behind
  RandomWindows, log_frequency 1, no progress bar and no checkpoints (neither loop writes any).

Rounds alternate the order (hand first, then Treadmill first) in one process so machine noise hits
both alike; only the training steps are timed (building the Trainer is not). The figure is the
median over rounds of Treadmill's iterations/s over the hand loop's (target >= 0.97).

    OMP_NUM_THREADS=1 .venv/bin/python bench/lm_throughput.py --threads 1            # ~1 min per 100 steps x round
    OMP_NUM_THREADS=1 .venv/bin/python bench/lm_throughput.py --steps 20 --rounds 3  # brief
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from peers import print_machine, verdict

from treadmill import OptimizerConfig, SchedulerConfig, TrainingConfig
from treadmill.data.tasks import get_task
from treadmill.lm import token_file_loader
from treadmill.lm.trainer import LanguageModelTrainer
from treadmill.models.gpt import GPT, GPTConfig

BLOCK, BATCH, LR, MIN_LR, WARMUP, TOTAL = 64, 12, 1e-3, 1e-4, 100, 2000


def nanogpt_model(vocab_size: int) -> GPT:
    """nanoGPT's CPU recipe as a treadmill GPT."""
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, d_model=128, n_heads=4, n_layers=4, d_ff=512, max_len=BLOCK, dropout=0.0))


def nanogpt_lr(step: int) -> float:
    """nanoGPT's get_lr: linear warm-up, cosine to min_lr."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    ratio = min(1.0, (step - WARMUP) / (TOTAL - WARMUP))
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def hand_loop(model: GPT, optimizer: torch.optim.Optimizer, tokens: np.ndarray, steps: int, start: int,
              generator: torch.Generator) -> float:
    """`steps` nanoGPT iterations; returns the seconds they took."""
    model.train()
    began = time.perf_counter()
    for step in range(start, start + steps):
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(step)
        ix = torch.randint(len(tokens) - BLOCK, (BATCH,), generator=generator)
        x = torch.stack([torch.from_numpy(tokens[i : i + BLOCK].astype(np.int64)) for i in ix.tolist()])
        y = torch.stack([torch.from_numpy(tokens[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in ix.tolist()])
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()  # nanoGPT prints the loss every iteration
    return time.perf_counter() - began


def treadmill_config(steps: int) -> TrainingConfig:
    """The same optimizer, clipping and schedule as the hand loop, for `steps` steps."""
    return TrainingConfig(
        device="cpu", epochs=1, max_steps=steps, progress_bar=False, log_frequency=1, max_grad_norm=1.0, seed=0,
        optimizer=OptimizerConfig("AdamW", lr=LR, weight_decay=0.1, params={"betas": (0.9, 0.99)}),
        scheduler=SchedulerConfig("warmup_cosine", params={"warmup_steps": WARMUP, "total_steps": TOTAL,
                                                          "min_lr_ratio": MIN_LR / LR}),
    )


def treadmill_run(model: GPT, dataset: object, steps: int, round_index: int) -> float:
    """`steps` Trainer steps on random windows; returns the seconds fit() took."""
    loader = token_file_loader(dataset, BATCH, "random", num_samples=steps * BATCH, seed=round_index)  # type: ignore[arg-type]
    trainer = LanguageModelTrainer(model, treadmill_config(steps), loader)
    began = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - began


def main() -> None:
    """Interleaved rounds; print iterations/s of each and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100, help="training steps per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-dir", default=None, help="task.options.cache_dir for the token files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print_machine()
    task = get_task("lm-shakespeare", cache_dir=args.cache_dir)
    dataset = task.splits["train"]
    tokens = np.memmap(dataset.path, dtype=dataset.dtype, mode="r")
    hand_model = nanogpt_model(task.tgt_tokenizer.vocab_size)
    ours_model = copy.deepcopy(hand_model)
    optimizer = torch.optim.AdamW(hand_model.parameters(), lr=LR, betas=(0.9, 0.99), weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    hand_loop(hand_model, optimizer, tokens, 3, 0, generator)  # warm-up of both code paths, untimed
    treadmill_run(ours_model, dataset, 3, -1)
    ratios = []
    print(f"{'round':>5} {'hand it/s':>10} {'treadmill it/s':>15} {'ratio':>6}")
    for r in range(args.rounds):
        timings = {}
        for who in (("hand", "ours") if r % 2 == 0 else ("ours", "hand")):
            if who == "hand":
                timings[who] = hand_loop(hand_model, optimizer, tokens, args.steps, r * args.steps, generator)
            else:
                timings[who] = treadmill_run(ours_model, dataset, args.steps, r)
        hand_rate, ours_rate = args.steps / timings["hand"], args.steps / timings["ours"]
        ratios.append(ours_rate / hand_rate)
        print(f"{r + 1:>5} {hand_rate:>10.2f} {ours_rate:>15.2f} {ratios[-1]:>6.3f}", flush=True)
    verdict("Treadmill / hand iterations per second (median)", statistics.median(ratios), 0.97, higher_is_better=True)


if __name__ == "__main__":
    main()
