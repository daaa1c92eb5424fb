"""Tiny trained run directories for the serve and export tests (a few seconds each)."""

from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path

from treadmill.cli import main

SEQ2SEQ = """
task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 5, n_train: 300, n_valid: 40, n_test: 40}}
model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32, dropout: 0.0,
        max_len: 64}
data: {batch_size: 32, eval_batch_size: 40}
training: {epochs: 2, progress_bar: false, optimizer: {lr: 3.0e-3}}
seq2seq: {generation: {max_len: 8}}
evaluation: {samples: 0, generation: {strategy: beam, beam_size: 3, max_len: 8}}
diagnostics: {enabled: false}
"""

GPT = SEQ2SEQ.replace(
    "model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32, dropout: 0.0,\n"
    "        max_len: 64}",
    "model: {name: gpt, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32, max_len: 64, dropout: 0.0}",
).replace("evaluation: {samples: 0, generation: {strategy: beam, beam_size: 3, max_len: 8}}",
          "evaluation: {samples: 0, generation: {strategy: greedy, max_len: 8}}")


def train_run(root: Path, config_text: str, name: str) -> Path:
    """Train `config_text` into root/name (in this process, quietly); returns the run directory."""
    config = root / f"{name}.yaml"
    config.write_text(config_text)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["train", str(config), "--run-dir", str(root / name), "training.epochs=1"])
    assert code == 0
    return root / name


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
