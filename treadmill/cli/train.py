"""`treadmill train CONFIG.yaml [dotted.key=value ...] [--run-dir DIR]`: the training recipe.

    config = load_run_config(CONFIG, overrides)     # every value checked; nothing written yet
    task = build_task(config); sizes into config.model
    write config.yaml, task.json, tokenizers/       # rank 0
    model = build_model(config)                     # seeded by config.seed
    trainer.fit()                                   # teacher forcing; checkpoints/
    load the evaluated weights (best, last, or the mean of the last N)
    [sequence-level phase: MRT, REINFORCE or more teacher forcing; checkpoints_finetune/]
    evaluate_splits(...)                            # predictions.tsv, samples, headlines
    summary.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from treadmill.checkpoint import unwrap_model
from treadmill.cli.build import (
    build_callbacks,
    build_loaders,
    build_model,
    build_task,
    make_trainer,
    resolve_model_sizes,
    seed_model_init,
)
from treadmill.cli.config import RunConfig, load_run_config
from treadmill.cli.evaluate import evaluate_splits
from treadmill.cli.run_dir import (
    FINETUNE_CHECKPOINTS,
    checkpoint_dir,
    load_final_weights,
    write_run_files,
)
from treadmill.distributed import is_main_process
from treadmill.run_report import print_run_report, run_report
from treadmill.training.dir_lock import DirectoryLock
from treadmill.training.history import last_metrics

__all__ = ["add_parser", "run", "train_run", "finetune_sequence_level"]


def add_parser(commands: Any) -> None:
    """The `train` subcommand's arguments."""
    parser = commands.add_parser("train", help="train from a YAML config")
    parser.add_argument("config", help="YAML run config, e.g. examples/g2p.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.d_model=256")
    parser.add_argument("--run-dir", help="where to write the run (default runs/<config name>)")


def run(args: argparse.Namespace) -> int:
    """Train, then print the run directory and the summary as JSON on the last line."""
    config = load_run_config(args.config, args.overrides)
    run_dir = Path(args.run_dir or Path("runs") / Path(args.config).stem)
    summary = train_run(config, run_dir)
    if not summary:  # a torchrun rank other than 0: rank 0 reports
        return 0
    # The per-epoch history and last train/valid metrics stay in summary.json: on a terminal they bury the result.
    print(json.dumps({k: v for k, v in summary.items() if k not in ("train", "valid", "history")}, default=float))
    return 0


def train_run(config: RunConfig, run_dir: Path,
              model_fn: Callable[[RunConfig], nn.Module] = build_model) -> dict[str, Any]:
    """Train as the config says, evaluate, write the run directory; the summary (`{}` on every
    torchrun rank but 0). `model_fn` builds the model from the config (sizes resolved)."""
    main = is_main_process()  # under torchrun every rank trains and evaluates; rank 0 alone writes and reports
    # One run per run directory: a second `treadmill train` into it is refused before it writes anything.
    with DirectoryLock(run_dir, "run directory") if main else contextlib.nullcontext():
        return _train_and_evaluate(config, run_dir, model_fn, main)


def _train_and_evaluate(config: RunConfig, run_dir: Path, model_fn: Callable[[RunConfig], nn.Module],
                        main: bool) -> dict[str, Any]:
    """`train_run` with the run directory locked."""
    started = time.perf_counter()
    task = build_task(config)
    resolve_model_sizes(config, task)
    if main:
        write_run_files(run_dir, config, task)
    seed_model_init(config)
    model = model_fn(config)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if main:
        print(f"Task {task.name}: {task.split_sizes()}; model {config.model.name} with {n_params:,} parameters.", flush=True)
        if n_trainable != n_params:  # LoRA (model.lora) or another freezing
            print(f"Trainable parameters: {n_trainable:,} of {n_params:,} ({100 * n_trainable / n_params:.2f}%).",
                  flush=True)
    loaders = build_loaders(config, task)
    checkpoints = checkpoint_dir(run_dir, config)
    trainer = make_trainer(config, task, model, loaders, checkpoint_dir=checkpoints,
                           callbacks=build_callbacks(config, run_dir if main else None))
    history = trainer.fit(resume_from=config.resume_from)
    weights = load_final_weights(unwrap_model(trainer.model), checkpoints, config.evaluation.average_last)
    if weights and main:
        print(f"Loaded {weights}.", flush=True)
    if config.sequence_level.enabled:
        trainer, weights = finetune_sequence_level(config, task, trainer, loaders, run_dir)
        history = trainer.history
    train_seconds = time.perf_counter() - started
    # Every rank evaluates the whole split (the teacher-forced metrics are all-reduced); rank 0 alone reports.
    final = evaluate_splits(config, task, trainer, loaders, run_dir, write_predictions=main, report=main)
    if not main:
        return {}
    summary = {
        "task": task.name,
        "model": config.model.name,
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "epochs": history["total_epochs"],
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "train": last_metrics(history, "train"),
        "valid": last_metrics(history, "val"),
        **final,
        "alarms": _alarms(trainer),
        "history": {k: v for k, v in history.items() if isinstance(v, list) and v and isinstance(v[0], float)},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    results = {split: final[split] for split in config.evaluation.splits if split in final}
    print_run_report(run_report(trainer, train_seconds=train_seconds, results=results,
                                weights={"evaluated": weights} if weights else None, run_dir=run_dir))
    return summary


def _alarms(trainer: Any) -> list[dict[str, Any]]:
    """The health alarms of the run (kind, subject, first and last step, count, first evidence)."""
    from treadmill.callbacks.alarms import HealthMonitor

    return [{"kind": a.kind, "subject": a.subject, "step": a.step, "last_step": a.last_step, "count": a.count,
             "evidence": a.evidence}
            for cb in trainer.callbacks if isinstance(cb, HealthMonitor) for a in cb.alarms]


def finetune_sequence_level(config: RunConfig, task: Any, trainer: Any, loaders: dict[str, Any],
                            run_dir: Path) -> tuple[Any, str | None]:
    """The fine-tuning phase on the teacher-forced model (MRT, REINFORCE, GRPO, consistency, or "mle":
    more teacher forcing with the same budget, the control an honest comparison needs): its trainer,
    holding the phase's final weights, and where those weights come from."""
    phase = config.sequence_level
    before = trainer.evaluate(loaders["valid"], prefix="val_") if "valid" in loaders else {}
    model = unwrap_model(trainer.model)  # the new trainer wraps it for DDP itself; the old wrapper goes
    trainer.model = model
    training = dataclasses.replace(
        config.training, epochs=phase.epochs, max_steps=phase.max_steps, scheduler=None,
        optimizer=dataclasses.replace(config.training.optimizer, lr=phase.lr),
    )
    directory = run_dir / FINETUNE_CHECKPOINTS
    tuned = make_trainer(config, task, model, loaders, checkpoint_dir=directory, training=training, objective=phase.method,
                         callbacks=build_callbacks(config, run_dir / "finetune" if is_main_process() else None))
    tuned.print(f"Fine-tuning ({phase.method}, {phase.epochs} epoch(s), lr {phase.lr}); "
                f"before: val_exact_match {before.get('val_exact_match', float('nan')):.4f}")
    tuned.history["before_finetune"] = before
    tuned.fit()
    return tuned, load_final_weights(unwrap_model(tuned.model), directory, None)
