"""`model.init_from: RUN_DIR`: start a run from another finished run's weights.

The source run's evaluated weights (best, last, or the mean of its last N, as `train` evaluated
it) are loaded into the new model before training starts, and before `model.lora` injects
adapters, so LoRA fine-tunes them as its frozen base. The two runs must speak one vocabulary
(the same saved tokenizers, id for id) and build models of the same shapes; otherwise the run is
refused before it trains.

Full fine-tuning checkpoints hold every weight, so such a run no longer needs its source once
trained; a LoRA run's checkpoints hold the adapters only, so its `eval` and `generate` read the
base weights from the source run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from treadmill.cli.config import RunConfig, RunConfigError
from treadmill.cli.run_dir import (
    FINETUNE_CHECKPOINTS,
    checkpoint_dir,
    load_final_weights,
    read_run_config,
)
from treadmill.data.tokenizers import load_tokenizer
from treadmill.training.io_errors import CheckpointError

__all__ = ["check_init_vocabulary", "load_init_weights", "source_config"]


def source_config(run_dir: str | Path) -> RunConfig:
    """The config of the run `model.init_from` names; a directory that is no finished run is an error."""
    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise RunConfigError(f"model.init_from={str(run_dir)!r} is not a run directory (it has no config.yaml): "
                             "name the directory of a run `treadmill train` finished.")
    config = read_run_config(path)
    if config.model.lora is not None:
        raise RunConfigError(f"model.init_from={str(run_dir)!r} is a LoRA run (model.lora), whose checkpoints hold "
                             "adapters only: export its merged weights with `treadmill export RUN --merge-lora` "
                             "and train from a full run.")
    return config


def check_init_vocabulary(config: RunConfig, task: Any) -> None:
    """Refuse `model.init_from` when the source run's model family or tokenizers differ from this
    run's: the embedding rows would mean other symbols."""
    source_dir = Path(config.model.init_from)  # type: ignore[arg-type]
    source = source_config(source_dir)
    if source.model.name != config.model.name:
        raise RunConfigError(f"model.init_from={str(source_dir)!r} trained model.name={source.model.name}, "
                             f"this run builds model.name={config.model.name}: the weights cannot carry over.")
    for side in ("src", "tgt"):
        path = source_dir / "tokenizers" / f"{side}.json"
        mine = getattr(task, f"{side}_tokenizer", None)
        if mine is None or not path.is_file():
            continue
        theirs: Any = load_tokenizer(path)
        if _state(theirs.to_dict()) != _state(mine.to_dict()):
            raise RunConfigError(
                f"model.init_from={str(source_dir)!r}: its {side} vocabulary ({path}, {theirs.vocab_size} tokens) "
                f"differs from the one task {task.name!r} gives this run ({mine.vocab_size} tokens), so its "
                "embedding rows would mean other tokens. Use the same tokenizer for both runs (for lm-shakespeare, "
                "set task.options.genres in both: every genre selection shares one vocabulary)."
            )


def load_init_weights(model: nn.Module, config: RunConfig) -> str:
    """Load the weights of the run `config.model.init_from` into `model`; say which file they came from.
    Shapes that differ are a CheckpointError naming each mismatched weight."""
    source_dir = Path(config.model.init_from)  # type: ignore[arg-type]
    source = source_config(source_dir)
    directory, average_last = checkpoint_dir(source_dir, source), source.evaluation.average_last
    if source.sequence_level.enabled and (source_dir / FINETUNE_CHECKPOINTS).is_dir():
        directory, average_last = source_dir / FINETUNE_CHECKPOINTS, None
    try:
        loaded = load_final_weights(model, directory, average_last)
    except CheckpointError as err:
        raise CheckpointError(f"model.init_from={str(source_dir)!r}: {err}") from err
    if not loaded:
        raise RunConfigError(f"model.init_from={str(source_dir)!r}: '{directory}' has no best.safetensors or last.pt "
                             "to start from; is the run finished?")
    return loaded


def _state(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False)
