"""From a RunConfig to the objects a run needs: the task, the model, the loaders, the trainer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from treadmill.callbacks.base import Callback
from treadmill.cli.config import RunConfig, RunConfigError
from treadmill.config import TrainingConfig
from treadmill.distributed import is_main_process
from treadmill.validation import ConfigError

__all__ = ["build_task", "build_model", "build_loaders", "build_callbacks", "make_trainer", "reference_fn",
           "group_fn", "training_weights"]


def build_task(config: RunConfig) -> Any:
    """The task named in the config, built with its options."""
    from treadmill.data.tasks import get_task

    try:
        task = get_task(config.task.name, **config.task.options)
        if config.model.name == "hf":  # the checkpoint's own tokenizer encodes the text
            from treadmill.hf import load_tokenizer
            from treadmill.hf.tasks import use_tokenizer

            hf = config.model.build_config()
            task = use_tokenizer(task, load_tokenizer(hf.path, hf.resolved_task))
    except ConfigError as err:
        raise RunConfigError(f"task: {err}") from err
    except (TypeError, ValueError) as err:  # an option value the task's builder refuses
        raise RunConfigError(f"task.options of {config.task.name!r}: {err}") from err
    phase = config.sequence_level
    # Refused now, not after the teacher-forced phase has trained for hours.
    if phase.enabled and phase.method != "mle" and phase.options.get("reward") == "checker" and task.checker is None:
        raise RunConfigError(f"sequence_level.reward=checker: task {task.name!r} cannot check its answers (it has no "
                             "checker; the addition tasks do). Choose exact_match, per, wer, bleu, chrf or module:function.")
    return task


def resolve_model_sizes(config: RunConfig, task: Any) -> None:
    """Write the sizes the model takes from the task (vocabularies, horizons) into config.model, so
    config.yaml rebuilds the same model without the task; refuse a model the task cannot feed."""
    if task.kind == "classification" or config.model.head is not None:  # a body + head; sizes from the task
        from treadmill.cli.classify import resolve_classifier_sizes

        resolve_classifier_sizes(config, task)
        if config.model.init_from is not None:
            from treadmill.cli.init_from import check_init_vocabulary

            check_init_vocabulary(config, task)
        return
    sizes = task.model_sizes()
    missing = [name for name in config.model.required_sizes() if name not in config.model.fields and name not in sizes]
    if missing:
        raise RunConfigError(
            f"model.name={config.model.name} needs {', '.join(missing)}, which task {task.name!r} (a {task.kind} task) "
            f"does not provide: {'use model.name=forecaster' if task.kind == 'forecast' else 'choose a sequence model'}."
        )
    for name in config.model.required_sizes():
        config.model.fields.setdefault(name, sizes[name])
    if task.kind == "lm":  # a GPT's context defaults to the task's windows
        from treadmill.cli.lm import check_lm_model

        check_lm_model(config, task)
        config.model.fields.setdefault("max_len", sizes["max_len"])
    if config.model.init_from is not None:  # the source's embedding rows must mean this task's tokens
        from treadmill.cli.init_from import check_init_vocabulary

        check_init_vocabulary(config, task)


def build_model(config: RunConfig, init_weights: bool = True) -> nn.Module:
    """The model of the config (its sizes resolved, see `resolve_model_sizes`); with model.init_from
    and `init_weights`, starting from that run's weights (loaded before any LoRA adapters)."""
    from treadmill.models.registry import MODELS

    model = MODELS[config.model.name][1](config.model.build_config(config.model.fields))
    if config.model.init_from is not None and init_weights:
        from treadmill.cli.init_from import load_init_weights

        source = load_init_weights(model, config)
        if is_main_process():
            print(f"Starting from {source} (model.init_from).", flush=True)
    trainable: tuple[str, ...] = ()
    if config.model.head is not None:  # the (loaded) model becomes the body of a classifier with a new head
        from treadmill.models.classifier import HEAD_PREFIXES, SequenceClassifier

        head = config.model.head
        model = SequenceClassifier(model, int(head["num_labels"]), head["pooling"], head["dropout"])
        trainable = HEAD_PREFIXES  # under LoRA the new head trains in full
    if config.model.lora is not None:  # adapters injected, the rest frozen; checkpoints hold the adapters
        from treadmill.peft import LoraSettings, apply_lora

        try:
            apply_lora(model, LoraSettings.from_dict(config.model.lora), trainable=trainable)
        except ConfigError as err:
            raise RunConfigError(str(err)) from err
    return model


def build_loaders(config: RunConfig, task: Any, splits: tuple[str, ...] = ("train", "valid", "test")) -> dict[str, Any]:
    """DataLoaders of the task's splits: train shuffled (token budget or batch size), others in order."""
    if task.kind == "lm":
        from treadmill.cli.lm import lm_loaders

        return lm_loaders(config, task, splits)
    data = config.data
    loaders = {}
    if "train" in splits:
        # With a token budget, batch sizes vary with length; batch_size then plays no part.
        batch_size = None if data.max_tokens else data.batch_size
        loaders["train"] = task.loader("train", batch_size=batch_size, max_tokens=data.max_tokens, seed=config.seed,
                                       num_workers=data.num_workers, sample_weights=training_weights(config, task))
    for split in splits:
        if split != "train" and split in task.splits:
            loaders[split] = task.loader(split, batch_size=data.eval_batch_size, shuffle=False)
    return loaders


def training_weights(config: RunConfig, task: Any, report: bool = True) -> list[float] | None:
    """Per training example its `data.sample_weights` weight (None without them); with `report`, the
    realised share of each value in epoch 0's draws is printed once."""
    weighting = config.data.weight_of()
    if weighting is None:
        return None
    from treadmill.data.weighted import WeightedEpochSampler, example_weights, realised_distribution

    by, weights = weighting
    values = task.fields.get("train", {}).get(by)
    if values is None:
        raise RunConfigError(f"data.sample_weights.by={by!r}: task {task.name!r} has no training field {by!r}; "
                             f"its fields: {', '.join(task.fields.get('train', {})) or 'none'}.")
    per_example = example_weights(values, weights)
    if report:
        drawn = realised_distribution(values, WeightedEpochSampler(per_example, seed=config.seed).indices(0))
        natural = realised_distribution(values, range(len(values)))
        print(f"Sampling training examples by {by} with weights {weights}: epoch 0 draws "
              + ", ".join(f"{v}: {share:.1%} (data {natural.get(v, 0.0):.1%})" for v, share in drawn.items()), flush=True)
    return per_example


def group_fn(task: Any, split: str, fields: list[str]) -> Callable[[Mapping[str, Any]], list[list[str]]] | None:
    """Per example of a batch its group labels (`n_demos=3`), one per field of `fields`."""
    if not fields:
        return None
    columns = task.fields.get(split, {})
    missing = [f for f in fields if f not in columns]
    if missing:
        raise RunConfigError(f"evaluation.group_by: task {task.name!r} has no field {', '.join(missing)} in split "
                             f"{split!r}; its fields: {', '.join(columns) or 'none'}.")
    return lambda batch: [[f"{f}={columns[f][int(i)]}" for f in fields] for i in batch["index"]]


def build_callbacks(config: RunConfig, log_dir: Path | None) -> list[Callback]:
    """Loggers writing into `log_dir` (none when None, e.g. on torchrun ranks but 0) and the
    diagnostics the config enables."""
    callbacks: list[Callback] = _loggers(log_dir) if log_dir is not None else []
    diagnostics = config.diagnostics
    if diagnostics.enabled:
        from treadmill.callbacks.alarms import HealthMonitor
        from treadmill.callbacks.diagnostics import Diagnostics

        # An empty watch list keeps Diagnostics' default, which a model without an encoder skips.
        watch: dict[str, Any] = {"watch": tuple(diagnostics.watch)} if diagnostics.watch else {}
        callbacks.append(Diagnostics(every_n_steps=diagnostics.every_n_steps, **watch))
        callbacks.append(HealthMonitor(on_alarm=diagnostics.on_alarm))
    return callbacks


def _loggers(log_dir: Path) -> list[Callback]:
    """metrics.csv and steps.csv, and TensorBoard files where tensorboard is installed."""
    from treadmill.callbacks.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Callback] = [CSVLogger(log_dir)]
    try:
        loggers.append(TensorBoardLogger(log_dir))
    except ImportError:  # an optional extra; training works without it
        pass
    return loggers


def reference_fn(task: Any, split: str) -> Callable[[Mapping[str, Any]], list[list[list[int]]]] | None:
    """All acceptable targets of a batch's examples, as token ids (multi-reference tasks)."""
    if not task.references or split not in task.references:
        return None
    encoded = [[task.tgt_tokenizer.encode(r) for r in refs] for refs in task.references[split]]
    return lambda batch: [encoded[int(i)] for i in batch["index"]]


def make_trainer(
    config: RunConfig,
    task: Any,
    model: nn.Module,
    loaders: Mapping[str, Any],
    *,
    checkpoint_dir: Path | None,
    callbacks: list[Callback] | None = None,
    training: TrainingConfig | None = None,
    objective: str = "mle",
) -> Any:
    """The trainer of a run phase: a Seq2SeqTrainer (teacher forcing, `objective` "mle"), a
    SequenceLevelTrainer ("mrt", "reinforce", "grpo", "consistency"), or the task kind's own (forecasts); with no
    "train" loader, a trainer that only evaluates."""
    training = dataclasses.replace(training or config.training, checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)
    trainer = _phase_trainer(config, task, model, loaders, training, callbacks, objective)
    trainer.progress.headline = tuple(task.headline)  # the task's own figures in each epoch's summary
    return trainer


def _phase_trainer(config: RunConfig, task: Any, model: nn.Module, loaders: Mapping[str, Any],
                   training: TrainingConfig, callbacks: list[Callback] | None, objective: str) -> Any:
    train_loader, valid_loader = loaders.get("train"), loaders.get("valid")
    if task.kind == "lm":  # the language_model objective
        from treadmill.cli.lm import lm_trainer

        return _quiet_report(lm_trainer(config, task, model, loaders, training, callbacks))
    if task.kind == "classification":
        from treadmill.cli.classify import classification_trainer

        return _quiet_report(classification_trainer(config, task, model, loaders, training, callbacks))
    if task.kind == "forecast":
        from treadmill.forecasting import ForecastTrainer

        return _quiet_report(ForecastTrainer(model, training, train_loader, valid_loader, loss_fn=nn.MSELoss(),
                                             callbacks=callbacks))
    from treadmill.seq2seq.trainer import Seq2SeqTrainer

    options: dict[str, Any] = {
        "seq2seq": config.seq2seq,
        "detokenize": task.tgt_tokenizer.decode,
        "references": reference_fn(task, "valid"),
        "groups": group_fn(task, "valid", config.evaluation.group_fields()) if "valid" in task.splits else None,
        "wer_unit": task.wer_unit,
        "callbacks": callbacks,
    }
    if objective == "mle":
        return _quiet_report(Seq2SeqTrainer(model, training, train_loader, valid_loader, **options))
    from treadmill.seq2seq.sequence_trainer import SequenceLevelTrainer

    return _quiet_report(SequenceLevelTrainer(model, training, train_loader, valid_loader,
                                              sequence_level=config.sequence_level.objective(),
                                              source_detokenize=task.src_tokenizer.decode, checker=task.checker,
                                              **options))


def _quiet_report(trainer: Any) -> Any:
    """The command line prints its own report after evaluating, not the trainer's after fit."""
    trainer.print_report = False
    return trainer


def seed_model_init(config: RunConfig) -> None:
    """Seed the global RNG so the model's initial weights follow the run's seed."""
    torch.manual_seed(config.seed)
