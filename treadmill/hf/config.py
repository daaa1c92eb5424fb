"""HFModelConfig: the run config's `model:` section for `model.name: hf` (no transformers import here).

    model:
      name: hf
      path: checkpoints/opus-mt-en-fr     # a directory transformers' save_pretrained wrote
      task: auto                          # seq2seq | causal-lm | auto (from config.json's model_type)
      lora: {r: 8, alpha: 16, dropout: 0.05, target_modules: [q_proj, v_proj]}   # optional, any family

`lora` belongs to the run config's model section (treadmill/cli/sections.py), not to this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from treadmill.validation import ConfigError

__all__ = ["HFModelConfig", "build_hf_model", "resolve_task"]

GENERATIVE_TASKS = ("seq2seq", "causal-lm")


@dataclass
class HFModelConfig:
    """A pretrained transformers checkpoint as a run's model; validated at construction."""

    path: str = ""
    task: str = "auto"

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError(
                "model.path is required with model.name=hf: the directory of a transformers checkpoint "
                "(config.json, weights, tokenizer.json)", field="path"
            )
        if self.task not in ("auto", *GENERATIVE_TASKS):
            raise ConfigError(
                f"model.task={self.task!r} is not one of auto, {', '.join(GENERATIVE_TASKS)}", field="task"
            )
        resolve_task(self.path, self.task)  # no config.json / an unsupported model_type: fail now

    @property
    def resolved_task(self) -> str:
        """seq2seq or causal-lm (auto: from config.json's model_type)."""
        return resolve_task(self.path, self.task)


def resolve_task(path: str | Path, task: str) -> str:
    """The generative task of checkpoint `path`: `task`, or with "auto" the one its model_type supports."""
    from treadmill.hf.loading import SUPPORTED, read_config

    if task != "auto":
        read_config(Path(path), task)
        return task
    config = read_config(Path(path), None)
    model_type = config.get("model_type")
    for candidate in GENERATIVE_TASKS:
        if model_type in SUPPORTED[candidate]:
            return candidate
    raise AssertionError("read_config accepts supported model types only")  # pragma: no cover


def build_hf_model(cfg: HFModelConfig) -> nn.Module:
    """The run's model: the checkpoint loaded behind our protocol."""
    from treadmill.hf.loading import load_pretrained

    return load_pretrained(cfg.path, task=cfg.resolved_task).model
