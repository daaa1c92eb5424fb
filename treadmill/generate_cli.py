"""`treadmill generate`: decode raw inputs with a trained run's tokenizers and model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.runconfig import RunConfigError, parse_overrides

__all__ = ["generate_lines"]


def generate_lines(run_dir: Path, texts: list[str], settings: list[str], attention_png: str | None = None) -> list[str]:
    """One decoded output per input text."""
    from treadmill.decoding import GenerationConfig, generate
    from treadmill.decoding.config import strategy_only_fields
    from treadmill.runner import load_run

    config, task, model = load_run(run_dir)
    if task.kind != "seq2seq":
        raise RunConfigError(f"`treadmill generate` decodes text; task {task.name!r} is a {task.kind} task.")
    options: dict[str, Any] = {**config["seq2seq"].get("generation", {}), **config["evaluation"]["generation"]}
    overrides = parse_overrides(settings)
    if "strategy" in overrides:  # the run's settings for another strategy do not carry over
        options = {k: v for k, v in options.items() if k not in strategy_only_fields(exclude=overrides["strategy"])}
    options.update(overrides)
    if attention_png:
        options["return_attention"] = True
    try:
        GenerationConfig(**options)
    except (TypeError, ValueError) as err:
        raise RunConfigError(f"generation settings {options}: {err}") from err
    if not texts:
        return []
    rows = [_source_ids(task, text) for text in texts]
    model.eval()
    try:
        if getattr(model, "is_encoder_decoder", True):
            width = max(len(r) for r in rows)
            src = torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows])
            output = generate(model, src, src == PAD_ID, **options)
        else:  # decoder-only: the source then BOS, as the model was trained (decoder_only_prompt)
            output = generate(model, prompt=[[*r, BOS_ID] for r in rows], **options)
    except ValueError as err:  # e.g. an input longer than the model's context
        raise RunConfigError(f"`treadmill generate` on {run_dir}: {err}") from err
    outputs = [task.tgt_tokenizer.decode(seq) for seq in output.sequences]
    if attention_png and output.attention is not None:
        from treadmill.plots import plot_attention

        src_tokens = [task.src_tokenizer.decode([t]) or str(t) for t in rows[0]]
        weights = output.attention[0][:, : len(src_tokens)]  # (output steps, src_len)
        tgt_tokens = [task.tgt_tokenizer.decode([t]) or str(t) for t in output.sequences[0]]
        tgt_tokens = (tgt_tokens + ["<eos>"])[: weights.shape[0]]  # the last step may be EOS's
        weights = weights[: len(tgt_tokens)]
        plot_attention(weights, src_tokens, tgt_tokens, out=Path(attention_png))
    return outputs


def _source_ids(task: Any, text: str) -> list[int]:
    """Source ids laid out as the task's datasets lay them out (with or without BOS / EOS)."""
    example = task.splits["test"][0]["src"] if "test" in task.splits else []
    ids = task.src_tokenizer.encode(text)
    if example and example[0] == BOS_ID:
        ids = [BOS_ID, *ids]
    if example and example[-1] == EOS_ID:
        ids = [*ids, EOS_ID]
    return ids
