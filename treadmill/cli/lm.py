"""The command line's language-modelling pieces: loaders, the step-based schedule, the trainer and
the final scores of an `lm` task (lm-shakespeare, lm-files).

An LM "epoch" is a validation period: with training.validation_every_n_steps=N each epoch draws
N x batch_size x gradient_accumulation_steps random windows, so every validation closes an epoch
(one row of metrics.csv, a best-checkpoint decision, an early-stopping check). training.max_steps
then sets the length of the run: epochs = ceil(max_steps / N), whatever training.epochs says.
Validation during training reads at most evaluation.max_batches batches of windows spread over
the valid split; the final scores read every window of each split.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from treadmill.cli.config import RunConfig, RunConfigError
from treadmill.config import TrainingConfig

__all__ = ["check_lm_model", "lm_loaders", "lm_training", "steps_per_epoch", "lm_trainer", "evaluate_lm_split"]


def check_lm_model(config: RunConfig, task: Any) -> None:
    """A decoder-only model whose context holds a window: model.name gpt, block_size <= max_len."""
    if config.model.name != "gpt":
        raise RunConfigError(f"task {task.name!r} trains a language model: use model.name=gpt (a decoder-only model), "
                             f"not {config.model.name!r}.")
    max_len = config.model.fields.get("max_len", task.block_size)
    if task.block_size > max_len:
        raise RunConfigError(
            f"task.options.block_size={task.block_size} is larger than model.max_len={max_len}: a window would not "
            f"fit the model's positions. Lower task.options.block_size or raise model.max_len to >= {task.block_size}.")


def steps_per_epoch(config: RunConfig, task: Any) -> int:
    """Optimizer steps per LM epoch: the validation period, else max_steps, else one pass of tokens."""
    training = config.training
    if training.validation_every_n_steps:
        return training.validation_every_n_steps
    if training.max_steps:
        return training.max_steps
    tokens_per_step = config.data.batch_size * task.block_size * training.gradient_accumulation_steps
    return max(1, task.splits["train"].n_tokens // tokens_per_step)


def lm_training(config: RunConfig, task: Any, training: TrainingConfig) -> TrainingConfig:
    """The run's TrainingConfig with epochs counted in validation periods when max_steps is set."""
    if training.max_steps is None or task.train_windows != "random":
        return training
    return dataclasses.replace(training, epochs=math.ceil(training.max_steps / steps_per_epoch(config, task)))


def lm_loaders(config: RunConfig, task: Any, splits: tuple[str, ...], full: bool = False) -> dict[str, Any]:
    """Window loaders: random windows for train (one validation period per epoch), spread windows
    (at most evaluation.max_batches batches) for valid, all windows for test (and valid when `full`)."""
    data, loaders = config.data, {}
    if "train" in splits:
        samples = steps_per_epoch(config, task) * data.batch_size * config.training.gradient_accumulation_steps
        loaders["train"] = task.loader("train", batch_size=data.batch_size, seed=config.seed, num_samples=samples,
                                       num_workers=data.num_workers)
    for split in splits:
        if split != "train" and split in task.splits:
            limited = split == "valid" and not full and config.evaluation.max_batches is not None
            limit = config.evaluation.max_batches * data.eval_batch_size if limited else None  # type: ignore[operator]
            loaders[split] = task.loader(split, batch_size=data.eval_batch_size, limit=limit)
    return loaders


def lm_trainer(config: RunConfig, task: Any, model: Any, loaders: Mapping[str, Any], training: TrainingConfig,
               callbacks: Any) -> Any:
    """The `language_model` objective's trainer for this run phase."""
    from treadmill.lm.trainer import LanguageModelTrainer

    return LanguageModelTrainer(model, lm_training(config, task, training), loaders.get("train"), loaders.get("valid"),
                                callbacks=callbacks)


def evaluate_lm_split(config: RunConfig, task: Any, trainer: Any, split: str) -> dict[str, float]:
    """loss (nats/token), perplexity and bits_per_char over every window of a split."""
    loader = lm_loaders(config, task, (split,), full=True)[split]
    return dict(trainer.evaluate(loader))
