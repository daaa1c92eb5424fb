"""Time to quality on G2P (CMUdict): Treadmill's recipe vs Hugging Face Seq2SeqTrainer + BART. LONG.

Both frameworks train on the same `g2p-cmudict` task (treadmill.data.tasks: the same split,
tokenizers and token ids; BART's special ids are set to Treadmill's) and are stopped when their
validation WER reaches the target (default 25%); the table gives the training time that took
and the test WER of the model at that moment (the test split is decoded once, at the end).

* Treadmill: the run built by treadmill.cli.build (build_model, make_trainer), i.e.
  a Seq2SeqTrainer and a TransformerSeq2Seq with the blocks, sizes and optimisation of
  examples/g2p_full.yaml (norm placement, sizes, dropout, epochs, learning rate and warm-up are read from that
  file, as are AdamW's betas and weight decay (off norms and biases), gradient clipping and
  label smoothing; cosine to 0 after the warm-up).
* HF: transformers' Seq2SeqTrainer with a BartForConditionalGeneration of the same sizes (BART is
  post-norm with learned positions and one shared embedding; the printed parameter counts show
  the difference) and the same optimisation through Seq2SeqTrainingArguments. BART's attention
  and activation dropout are 0, as in Treadmill's recipe.

Both use fixed batches of --batch-size examples (shuffled each epoch), so both take the same
number of updates per epoch and follow the same learning-rate schedule. Every --eval-every-min
minutes of training, a callback pauses the clock and decodes the validation split greedily
(max 32 tokens; each framework with its own generate()); WER is the share of words whose output
matches none of the reference pronunciations (1 - exact match, as treadmill eval reports it).
Training stops at the target, at --max-minutes of training, or at the end of the schedule.
Training seconds exclude those evaluations; wall seconds include them. Progress bars, logging,
checkpoints and per-epoch validation are off in both. The two runs are sequential, not
interleaved (each is a long training): run it on a quiet machine, and repeat with --order hf
to check that the order does not matter.

    .venv/bin/python bench/g2p_time_to_quality.py --threads 1   # LONG: up to 2 x 120 min + evals
    .venv/bin/python bench/g2p_time_to_quality.py --quick       # plumbing check, well under a minute
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peers import Sizes, build_bart, count_parameters, print_machine, verdict
from torch import Tensor, nn

from treadmill.callbacks.base import Callback
from treadmill.cli.build import build_model, make_trainer, resolve_model_sizes
from treadmill.cli.config import run_config_from_dict
from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.data.collate import collate_seq2seq
from treadmill.data.tasks import Task, get_task
from treadmill.decoding import generate
from treadmill.seq2seq.trainer import strip_target


@dataclass
class Result:
    """What one framework's run measured."""

    framework: str
    params: int
    steps: int = 0
    train_s: float = 0.0  # training time when stopped (evaluations excluded)
    reached_s: float | None = None  # training time when valid WER first met the target
    valid_wer: float = float("nan")
    test_wer: float = float("nan")
    wall_s: float = 0.0
    history: list[tuple[float, int, float]] = field(default_factory=list)  # (train s, step, WER)


class QualityClock:
    """Training-time clock: evaluates every `every_s` seconds of training, says when to stop.

    Time spent in evaluations is measured and left out of the training time, so the evaluation
    schedule does not favour the framework with the faster decoder.
    """

    def __init__(
        self,
        evaluate: Callable[[], float],
        target: float,
        every_s: float,
        budget_s: float,
        result: Result,
    ) -> None:
        self.evaluate, self.target, self.every_s, self.budget_s = (
            evaluate,
            target,
            every_s,
            budget_s,
        )
        self.result = result
        self.started = self.eval_s = 0.0
        self.next_eval = every_s

    def start(self) -> None:
        """Start the clock (at the framework's train-start hook)."""
        self.started = time.perf_counter()

    def train_seconds(self) -> float:
        """Seconds of training so far, evaluations excluded."""
        return time.perf_counter() - self.started - self.eval_s

    def check(self, step: int) -> None:
        """Evaluate on the validation split now and record the point."""
        at, began = self.train_seconds(), time.perf_counter()
        wer = self.evaluate()
        self.eval_s += time.perf_counter() - began
        self.result.history.append((at, step, wer))
        self.result.valid_wer, self.result.steps, self.result.train_s = wer, step, at
        if wer <= self.target and self.result.reached_s is None:
            self.result.reached_s = at
        print(
            f"  {self.result.framework}: step {step}, {at:7.1f}s training, valid WER {wer:.4f}",
            flush=True,
        )

    def tick(self, step: int) -> bool:
        """Called after every optimizer step; True when training should stop."""
        elapsed = self.train_seconds()
        if elapsed >= self.next_eval or elapsed >= self.budget_s:
            self.check(step)
            self.next_eval = elapsed + self.every_s
        return self.result.reached_s is not None or elapsed >= self.budget_s

    def finish(self, step: int) -> None:
        """After training: a last evaluation unless the last one was at this step."""
        if not self.result.history or self.result.history[-1][1] != step:
            self.check(step)


def quality_clock(
    task: Task,
    decode: Callable[[Tensor, Tensor], list[list[int]]],
    args: argparse.Namespace,
    result: Result,
) -> QualityClock:
    """The clock both runs use: validation WER every `eval_every_min`, stop at the target."""
    return QualityClock(
        lambda: evaluate_split(task, "valid", decode, args.eval_batch_size),
        args.target_wer,
        60 * args.eval_every_min,
        60 * args.max_minutes,
        result,
    )


def encoded_references(task: Task, split: str) -> list[list[list[int]]]:
    """Every acceptable pronunciation of each example of `split`, as target token ids."""
    encode = task.tgt_tokenizer.encode
    return [[encode(ref) for ref in refs] for refs in task.references[split]]


def word_error_rate(
    hyps: list[list[int]], indices: list[int], refs: list[list[list[int]]]
) -> float:
    """Share of words whose hypothesis matches none of their references."""
    wrong = sum(hyp not in refs[i] for hyp, i in zip(hyps, indices, strict=True))
    return wrong / max(len(hyps), 1)


def evaluate_split(
    task: Task, split: str, decode: Callable[[Tensor, Tensor], list[list[int]]], batch_size: int
) -> float:
    """WER of `decode` (src, src_padding_mask -> output ids) over a split."""
    refs = encoded_references(task, split)
    hyps: list[list[int]] = []
    indices: list[int] = []
    for batch in task.loader(split, batch_size=batch_size, shuffle=False):
        hyps += decode(batch["src"], batch["src_padding_mask"])
        indices += batch["index"].tolist()
    return word_error_rate(hyps, indices, refs)


def ours_decoder(model: nn.Module, max_len: int) -> Callable[[Tensor, Tensor], list[list[int]]]:
    """Greedy decoding with treadmill.decoding.generate (switches to eval mode and back itself)."""
    device = next(model.parameters()).device

    def decode(src: Tensor, mask: Tensor) -> list[list[int]]:
        out = generate(model, src.to(device), mask.to(device), strategy="greedy", max_len=max_len)
        return [list(seq) for seq in out.sequences]

    return decode


def hf_decoder(model: nn.Module, max_len: int) -> Callable[[Tensor, Tensor], list[list[int]]]:
    """Greedy decoding with BART's generate(), same cap on output tokens; eval mode during it."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_len,
        num_beams=1,
        do_sample=False,
        decoder_start_token_id=BOS_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        forced_eos_token_id=None,
    )
    device = next(model.parameters()).device

    def decode(src: Tensor, mask: Tensor) -> list[list[int]]:
        was_training = model.training
        model.eval()  # generate() does not switch dropout off by itself
        try:
            with torch.no_grad():
                out = model.generate(
                    input_ids=src.to(device),
                    attention_mask=(~mask).long().to(device),
                    generation_config=config,
                )
        finally:
            model.train(was_training)
        return [strip_target(row) for row in out.tolist()]

    return decode


def run_treadmill(args: argparse.Namespace, task: Task) -> Result:
    """Train the recipe through treadmill.cli.build until the target; returns its Result."""
    config = run_config_from_dict({
        "task": {"name": "g2p-cmudict", "options": {"max_words": args.max_words}},
        "model": {"name": "transformer", "d_model": args.d_model, "n_heads": args.heads,
                  "n_encoder_layers": args.layers, "n_decoder_layers": args.layers,
                  "d_ff": args.d_ff, "dropout": args.dropout, "norm_first": args.norm_first,
                  "positional": "sinusoidal"},
        "data": {"batch_size": args.batch_size, "max_tokens": None},
        "training": {
            "epochs": args.epochs, "max_steps": args.max_steps, "progress_bar": False,
            "checkpoint_dir": None, "log_frequency": 10**9, "max_grad_norm": args.max_grad_norm,
            "optimizer": {"optimizer_class": "AdamW", "lr": args.lr, "weight_decay": args.weight_decay,
                          "params": {"betas": args.betas}, "no_decay_norm_and_bias": True},
            "scheduler": {"scheduler_class": "warmup_cosine", "params": {"warmup_steps": args.warmup}},
        },
        "seq2seq": {"label_smoothing": args.label_smoothing, "val_decode_batches": 0},
        "seed": 0,
    })  # fmt: skip
    resolve_model_sizes(config, task)
    torch.manual_seed(0)
    model = build_model(config)
    result = Result("treadmill", count_parameters(model))
    decode = ours_decoder(model, args.max_len)
    clock = quality_clock(task, decode, args, result)

    class Clock(Callback):
        """Drives the QualityClock from Treadmill's hooks."""

        def on_train_start(self, trainer: Any) -> None:
            clock.start()

        def on_batch_end(self, trainer: Any, batch: Any, batch_idx: int, loss: Tensor) -> None:
            if clock.tick(trainer.global_step):
                trainer.should_stop = True

    loader = task.loader("train", batch_size=args.batch_size, seed=0)
    began = time.perf_counter()
    trainer = make_trainer(config, task, model, {"train": loader}, checkpoint_dir=None, callbacks=[Clock()])
    trainer.progress.end_epoch = lambda metrics: None  # keep the output to the clock's lines
    trainer.fit()
    clock.finish(trainer.global_step)
    result.test_wer = evaluate_split(task, "test", decode, args.eval_batch_size)
    result.wall_s = time.perf_counter() - began
    return result


def hf_collate(examples: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Treadmill's padded batch in BART's names; labels -100 at pads, decoder inputs given.

    decoder_input_ids must be passed: with label smoothing the HF Trainer takes `labels` out of
    the inputs, and BART would then build decoder inputs from the *source* ids.
    """
    batch = collate_seq2seq(examples)
    tgt, tgt_pad = batch["tgt"], batch["tgt_padding_mask"]
    return {
        "input_ids": batch["src"],
        "attention_mask": (~batch["src_padding_mask"]).long(),
        "decoder_input_ids": tgt[:, :-1].contiguous(),
        "labels": tgt[:, 1:].masked_fill(tgt_pad[:, 1:], -100).contiguous(),
    }


def run_hf(args: argparse.Namespace, task: Task) -> Result:
    """Train BART with Seq2SeqTrainer until the target; returns its Result."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    longest = max(
        max(len(s), len(t))
        for ds in task.splits.values()
        for s, t in zip(ds.src_ids, ds.tgt_ids, strict=True)
    )
    sizes = Sizes(
        vocab=max(task.src_tokenizer.vocab_size, task.tgt_tokenizer.vocab_size),
        d_model=args.d_model,
        heads=args.heads,
        layers=args.layers,
        d_ff=args.d_ff,
        dropout=args.dropout,
        max_positions=max(longest, args.max_len + 1),
    )
    torch.manual_seed(0)
    model = build_bart(sizes, attention_dropout=0.0, activation_dropout=0.0)
    result = Result("hf-bart", count_parameters(model))
    decode = hf_decoder(model, args.max_len)
    clock = quality_clock(task, decode, args, result)

    class Clock(TrainerCallback):
        """Drives the QualityClock from the HF Trainer's hooks."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.start()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if clock.tick(state.global_step):
                control.should_training_stop = True

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        training_args = Seq2SeqTrainingArguments(
            output_dir=out_dir, per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs, max_steps=args.max_steps or -1,
            learning_rate=args.lr, weight_decay=args.weight_decay, adam_beta1=args.betas[0],
            adam_beta2=args.betas[1], lr_scheduler_type="cosine", warmup_steps=args.warmup,
            max_grad_norm=args.max_grad_norm, label_smoothing_factor=args.label_smoothing, seed=0, use_cpu=not torch.cuda.is_available(),
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none",
            disable_tqdm=True, dataloader_pin_memory=False, remove_unused_columns=False,
        )  # fmt: skip
        trainer = Seq2SeqTrainer(
            model=model,
            args=training_args,
            train_dataset=task.splits["train"],
            data_collator=hf_collate,
            callbacks=[Clock()],
        )
        trainer.train()
    clock.finish(trainer.state.global_step)
    result.test_wer = evaluate_split(task, "test", decode, args.eval_batch_size)
    result.wall_s = time.perf_counter() - began
    return result


def print_results(results: list[Result], target: float) -> None:
    """The Markdown table, then whether each reached the target and the time ratio."""
    print(
        "| framework | params | steps | training s to target | valid WER | test WER | training s | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        reached = "not reached" if r.reached_s is None else f"{r.reached_s:,.0f}"
        print(
            f"| {r.framework} | {r.params:,} | {r.steps:,} | {reached} | {r.valid_wer:.4f} | "
            f"{r.test_wer:.4f} | {r.train_s:,.0f} | {r.wall_s:,.0f} |"
        )
    for r in results:
        print(
            f"{r.framework}: valid WER target {target:.0%} "
            f"{'reached' if r.reached_s is not None else 'NOT reached'}; test WER at stop {r.test_wer:.4f}"
        )
    by_name = {r.framework: r for r in results}
    ours, hf = by_name.get("treadmill"), by_name.get("hf-bart")
    if ours and hf and ours.reached_s is not None and hf.reached_s is not None:
        verdict("time-to-target HF/ours (ours faster)", hf.reached_s / ours.reached_s, 1.0, True)


RECIPE = Path(__file__).resolve().parent.parent / "examples" / "g2p_full.yaml"


def recipe_defaults(path: Path = RECIPE) -> dict[str, Any]:
    """The settings examples/g2p_full.yaml fixes: sizes, dropout, schedule and optimisation."""
    from omegaconf import OmegaConf

    recipe = OmegaConf.to_container(OmegaConf.load(path))
    model, training = recipe["model"], recipe["training"]
    optimizer = training["optimizer"]
    if model["n_encoder_layers"] != model["n_decoder_layers"]:
        raise ValueError(f"{path}: this benchmark needs as many encoder as decoder layers")
    return {
        "d_model": model["d_model"], "heads": model["n_heads"], "layers": model["n_encoder_layers"],
        "d_ff": model["d_ff"], "dropout": model["dropout"], "norm_first": model.get("norm_first", True),
        "epochs": training["epochs"],
        "lr": optimizer["lr"], "warmup": training["scheduler"]["params"]["warmup_steps"],
        "weight_decay": optimizer["weight_decay"], "betas": optimizer["params"]["betas"],
        "max_grad_norm": training["max_grad_norm"],
        "label_smoothing": recipe["seq2seq"]["label_smoothing"],
    }  # fmt: skip


def main() -> None:
    """Parse options, run both frameworks in turn, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few steps on a tiny subset: plumbing only"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--target-wer", type=float, default=0.25, help="validation WER to stop at")
    parser.add_argument(
        "--eval-every-min", type=float, default=5.0, help="minutes of training between evaluations"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=120.0, help="training budget per framework"
    )
    parser.add_argument(
        "--order", choices=("treadmill", "hf"), default="treadmill", help="which runs first"
    )
    parser.add_argument("--only", choices=("treadmill", "hf"), help="run one framework")
    parser.add_argument("--max-words", type=int, default=None, help="subsample the dictionary")
    parser.add_argument("--epochs", type=int, help="schedule length")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--d-model", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--d-ff", type=int)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--max-len", type=int, default=32, help="cap on decoded phonemes")
    parser.set_defaults(**recipe_defaults())
    args = parser.parse_args()
    if args.quick:
        args.max_words, args.max_steps, args.warmup, args.epochs = 400, 6, 2, 1
        args.eval_every_min, args.max_minutes = 0.02, 1.0
    torch.set_num_threads(args.threads)
    print_machine()
    task = get_task("g2p-cmudict", max_words=args.max_words)
    if args.max_steps:
        # HF lets max_steps override the epochs; Treadmill stops at whichever comes first. Enough
        # epochs for max_steps make both stop, and schedule the learning rate, at max_steps.
        per_epoch = math.ceil(len(task.splits["train"]) / args.batch_size)
        args.epochs = max(args.epochs, math.ceil(args.max_steps / per_epoch))
    print(
        f"g2p-cmudict {task.split_sizes()}, batch {args.batch_size}, {args.epochs} epochs"
        f"{f' (max {args.max_steps} steps)' if args.max_steps else ''}, target valid WER "
        f"{args.target_wer:.0%}, evaluation every {args.eval_every_min:g} min of training, "
        f"budget {args.max_minutes:g} min each",
        flush=True,
    )
    runners = {"treadmill": run_treadmill, "hf": run_hf}
    order = [args.only] if args.only else ([args.order] + [k for k in runners if k != args.order])
    results = []
    for name in order:
        results.append(runners[name](args, task))
        print(f"  {name}: torch threads after training {torch.get_num_threads()}", flush=True)
    print_results(results, args.target_wer)


if __name__ == "__main__":
    main()
