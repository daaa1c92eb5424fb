"""The command line's classification pieces: a `model.head` over a sequence model, its trainer, and
the final scores (accuracy, macro-F1, confusion matrix as JSON and PNG) of a classification task.

    model:
      name: gpt                          # or transformer (its encoder is the body)
      init_from: runs/lm_plays           # optional: the body starts from a language model's weights
      head: {type: classification, pooling: mean, dropout: 0.1}   # pooling: last | mean | attention
      lora: {r: 8, alpha: 16, target_modules: [in_proj, out_proj]}  # optional: the head stays trainable

The body's sizes come from the task (vocab_size = the source vocabulary) and the head's
`num_labels` from the task's labels; config.yaml records both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from treadmill.cli.config import RunConfig, RunConfigError
from treadmill.config import TrainingConfig

__all__ = ["BODIES", "resolve_classifier_sizes", "classification_trainer", "evaluate_classification_split"]

# model.name -> the sizes the task's source vocabulary fills
BODIES = {"gpt": ("vocab_size",), "transformer": ("src_vocab_size", "tgt_vocab_size")}


def resolve_classifier_sizes(config: RunConfig, task: Any) -> None:
    """Fill the body's vocabulary and the head's num_labels from the task; refuse a head without a
    classification task, a classification task without a head, and a body that cannot be one."""
    model = config.model
    if task.kind != "classification":
        raise RunConfigError(f"model.head classifies, but task {task.name!r} is a {task.kind} task: remove model.head "
                             "or choose a classification task (shakespeare-genre).")
    if model.head is None:
        raise RunConfigError(
            f"task {task.name!r} is a classification task: give the model a classification head, e.g. "
            "model.head: {type: classification, pooling: mean} (pooling: last, mean or attention) over "
            "model.name gpt or transformer (docs/pretrained.md).")
    if model.name not in BODIES:
        raise RunConfigError(f"model.head: model.name={model.name!r} cannot be a classifier's body; use "
                             f"{' or '.join(BODIES)}.")
    labels = int(task.model_sizes()["num_labels"])
    given = model.head.get("num_labels")
    if given is not None and given != labels:
        raise RunConfigError(f"model.head.num_labels={given}, but task {task.name!r} has {labels} labels: "
                             "leave num_labels out (the task gives it).")
    model.head["num_labels"] = labels
    for name in BODIES[model.name]:
        model.fields.setdefault(name, task.src_tokenizer.vocab_size)
    limit = int(model.build_config(model.fields).max_len)
    longest = max((max(dataset.lengths(), default=0) for dataset in task.splits.values()), default=0)
    if longest > limit:
        raise RunConfigError(f"task {task.name!r} has sources of {longest} tokens, longer than model.max_len={limit}: "
                             "lower task.options.max_chars or raise model.max_len.")


def classification_trainer(config: RunConfig, task: Any, model: Any, loaders: Mapping[str, Any],
                           training: TrainingConfig, callbacks: Any) -> Any:
    """The classification objective's trainer (cross-entropy on `label`) for this run phase."""
    from treadmill.classification import ClassificationTrainer

    return ClassificationTrainer(model, training, loaders.get("train"), loaders.get("valid"),
                                 num_labels=int(config.model.head["num_labels"]),  # type: ignore[index]
                                 callbacks=callbacks)


def evaluate_classification_split(task: Any, trainer: Any, loader: Any, split: str, run_dir: Path,
                                  write: bool = True) -> dict[str, float]:
    """loss, accuracy and macro_f1 over a split; with `write`, RUN/confusion_SPLIT.json and .png."""
    from treadmill.metrics.confusion import confusion_report

    metrics = dict(trainer.evaluate(loader))
    if write:
        labels = list(task.metadata.get("labels") or range(trainer.num_labels))
        report = confusion_report(trainer.confusion, [str(label) for label in labels])
        (run_dir / f"confusion_{split}.json").write_text(json.dumps(report, indent=2))
        try:
            from treadmill.plots.confusion import plot_confusion
        except ImportError:  # matplotlib is an optional extra: the JSON is written regardless
            print(f"confusion_{split}.png not drawn: it needs matplotlib (pip install 'treadmill[full]').", flush=True)
        else:
            title = f"{task.name} {split}: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}"
            plot_confusion(report["matrix"], report["labels"], run_dir / f"confusion_{split}.png", title)
    return metrics
