"""Re-encode a built-in task's text with a pretrained model's tokenizer (model.name: hf runs)."""

from __future__ import annotations

from typing import Any

from treadmill.data.datasets import Seq2SeqDataset
from treadmill.validation import ConfigError

__all__ = ["use_tokenizer"]


def use_tokenizer(task: Any, tokenizer: Any) -> Any:
    """`task` with every split re-tokenized by `tokenizer` (both sides), sources laid out as before."""
    if task.kind != "seq2seq":
        raise ConfigError(f"model.name=hf needs a text task; {task.name!r} is a {task.kind} task")
    layout = task.source_layout()
    for name, split in list(task.splits.items()):
        if not isinstance(split, Seq2SeqDataset):
            raise ConfigError(
                f"model.name=hf re-encodes a task's text with the checkpoint's tokenizer, but split {name!r} "
                f"of task {task.name!r} is a {type(split).__name__}, which keeps no text pairs"
            )
        task.splits[name] = Seq2SeqDataset(split.pairs, tokenizer, tokenizer, src_eos=layout.get("eos", True))
    task.src_tokenizer = task.tgt_tokenizer = tokenizer
    return task
