"""`treadmill eval RUN_DIR [--split test] [dotted.key=value ...]`: score a finished run on one split.

The same scoring ends `treadmill train` (`evaluate_splits`): teacher-forced metrics from the
trainer's evaluation, then free-running metrics from `decode_loader`, streamed batch by batch
into predictions.tsv and the printed samples; a task with its own scoring (forecasts) uses that.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from treadmill.cli.build import build_loaders, group_fn, make_trainer, reference_fn
from treadmill.cli.config import RunConfig, RunConfigError
from treadmill.cli.report import headline, print_samples, spread_rows
from treadmill.cli.run_dir import add_export_argument, add_refit_argument, load_ensemble, load_run
from treadmill.export import FORMATS, ONNX_FORMATS
from treadmill.training.progress import progress_task

__all__ = ["add_parser", "run", "eval_run", "evaluate_splits", "decode_split"]


def add_parser(commands: Any) -> None:
    """The `eval` subcommand's arguments."""
    parser = commands.add_parser("eval", help="evaluate a trained run; prints JSON on its last line")
    parser.add_argument("run_dir")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluation.generation.beam_size=5")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--ensemble", action="append", default=[], metavar="OTHER_RUN_DIR",
        help="decode with this run's model too, averaging probabilities (repeatable; same task and tokenizers)",
    )
    add_refit_argument(parser)
    # The onnx graphs decode, they do not score a loss: eval takes the PyTorch exports only.
    add_export_argument(parser, formats=tuple(f for f in FORMATS if f not in ONNX_FORMATS))


def run(args: argparse.Namespace) -> int:
    """Print the split's metrics as JSON on the last line."""
    metrics = eval_run(Path(args.run_dir), args.split, args.overrides, [Path(other) for other in args.ensemble],
                       refit_tokenizers=args.refit_tokenizers, export=args.export)
    print(json.dumps(metrics, default=float))
    return 0


def eval_run(run_dir: Path, split: str, overrides: list[str], ensemble: list[Path] | None = None,
             refit_tokenizers: bool = False, export: str | None = None) -> dict[str, Any]:
    """Metrics of a trained run on one split, or of an ensemble of it with other runs; `export`
    evaluates the run's exported model (RUN_DIR/export/FORMAT) instead of its checkpoint."""
    if export and ensemble:
        raise RunConfigError("--export and --ensemble cannot be combined: an ensemble averages float32 runs.")
    loaded = (load_ensemble(run_dir, ensemble, overrides, refit_tokenizers) if ensemble
              else load_run(run_dir, overrides, task=True, refit_tokenizers=refit_tokenizers, export=export))
    config, task = loaded.config, loaded.task
    if split not in task.splits:
        raise RunConfigError(f"task {task.name!r} has no split {split!r}; it has {', '.join(task.splits)}.")
    config.evaluation.splits, config.evaluation.samples = [split], 0
    loaders = build_loaders(config, task, splits=(split,))
    # No "train" loader: the trainer only evaluates, and builds no optimizer.
    trainer = make_trainer(config, task, loaded.model, loaders, checkpoint_dir=None,
                           training=_quiet(config))
    # An ensemble's predictions are not the run's own: they must not replace its predictions.tsv.
    # Nor are an export's: predictions.tsv stays the float32 model's.
    return evaluate_splits(config, task, trainer, loaders, run_dir, write_predictions=not (ensemble or export))[split]


def _quiet(config: RunConfig) -> Any:
    import dataclasses

    # Evaluation holds no optimizer state and builds no graph: the model is replicated (so an FSDP
    # run evaluates in one process too), and nothing is recomputed.
    return dataclasses.replace(config.training, progress_bar=False, scheduler=None, strategy="ddp", fsdp_wrap=None,
                               activation_checkpointing=False)


def evaluate_splits(config: RunConfig, task: Any, trainer: Any, loaders: dict[str, Any], run_dir: Path,
                    write_predictions: bool = True, report: bool = True) -> dict[str, Any]:
    """Metrics of the configured evaluation splits; predictions.tsv (test) and samples for seq2seq."""
    results: dict[str, Any] = {}
    for split in config.evaluation.splits:
        if split not in loaders:
            continue
        if task.kind == "lm":  # every window of the split: loss, perplexity, bits per char
            from treadmill.cli.lm import evaluate_lm_split

            results[split] = evaluate_lm_split(config, task, trainer, split)
        elif task.kind == "classification":  # loss, accuracy, macro-F1; confusion_SPLIT.json and .png
            from treadmill.cli.classify import evaluate_classification_split

            results[split] = evaluate_classification_split(task, trainer, loaders[split], split, run_dir,
                                                           write=write_predictions)
        elif task.evaluate_model is not None:  # the task scores models its own way (forecasts)
            results[split] = task.evaluate_model(trainer.model, task, loaders[split], trainer.device)
        else:
            metrics = trainer.evaluate(loaders[split], decode=False)  # teacher-forced view
            predictions = run_dir / "predictions.tsv" if split == "test" and write_predictions else None
            metrics.update(decode_split(config, task, trainer, split, loaders[split], predictions, report))
            results[split] = metrics
        if report:
            decoded_all = task.evaluate_model is not None or config.evaluation.max_batches is None
            counted = decoded_all and task.kind != "lm"  # an LM split is a token stream, not examples
            print(headline(split, results[split], len(task.splits[split]) if counted else None), flush=True)
    return results


def decode_split(config: RunConfig, task: Any, trainer: Any, split: str, loader: Any,
                 predictions_path: Path | None, report: bool = True) -> dict[str, float]:
    """Free-running decoding of a split, streamed batch by batch into metrics and predictions."""
    from treadmill.seq2seq.evaluation import DecodedBatch, decode_loader

    options = config.generation("evaluation")
    dataset, decode = task.splits[split], task.tgt_tokenizer.decode
    max_batches = config.evaluation.max_batches
    # The loader is sequential, so max_batches limits decoding to the first rows: spread samples over those.
    reachable = len(dataset) if max_batches is None else min(len(dataset), max_batches * config.data.eval_batch_size)
    sample_rows = spread_rows(reachable, config.evaluation.samples) if report else set()
    samples: list[tuple[int, bool, str, str, str]] = []
    handle = predictions_path.open("w", newline="") if predictions_path else None
    # "\n", not csv's default "\r\n": the file is for cut, awk and paste as much as for csv readers
    writer = csv.writer(handle, delimiter="\t", lineterminator="\n") if handle else None
    if writer:
        writer.writerow(["source", "reference", "hypothesis", "score", "rank"])

    def record(batch: DecodedBatch) -> None:
        references = batch.references or [[] for _ in batch.rows]  # task splits always have targets
        for row, hypotheses, scores, group in zip(batch.rows, batch.hypotheses, batch.scores, references, strict=True):
            source, reference = dataset.pairs[row]
            texts = [decode(h) for h in hypotheses] or [""]
            if writer:
                for rank, (text, score) in enumerate(zip(texts, scores or [float("nan")], strict=False), start=1):
                    writer.writerow([source, reference, text, f"{score:.4f}", rank])
            if row in sample_rows:  # right if it matches any of the references, as the metrics count it
                samples.append((row, texts[0] in {decode(r) for r in group}, source, reference, texts[0]))

    # Decoding a split takes minutes with beam search: a bar on stderr says how far it is (stdout
    # keeps the results, so `eval ... | tail -1` still reads the JSON).
    with progress_task(f"decoding {split}", reachable, "rows", stream=sys.stderr, enabled=report) as bar:

        def on_batch(batch: DecodedBatch) -> None:
            record(batch)
            bar.advance(len(batch.rows))

        try:
            result = decode_loader(
                trainer.model, loader, options, reference_fn(task, split), detokenize=decode, wer_unit=task.wer_unit,
                device=trainer.device, max_batches=max_batches, variants=task.metric_variants, on_batch=on_batch,
                groups=group_fn(task, split, config.evaluation.group_fields()),
            )
        finally:
            if handle:
                handle.close()
    print_samples(split, samples, reachable, options)
    return result.metrics
