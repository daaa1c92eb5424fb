"""`treadmill generate RUN_DIR --prompt TEXT [--set field=value ...]` for language-model runs: the
text after the prompt, printed as it is sampled.

Each sample is the prompt followed by the generated text, flushed piece by piece, so a terminal
shows it growing; with num_return_sequences=N, N samples (seeds seed, seed+1, ... when a seed is
set), each under a `--- sample i/N ---` line. A line per sample on stderr gives its token count
and speed, so stdout holds only the text. Generation settings are the run's
evaluation.generation with `--set` over them (max_len counts generated tokens).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from treadmill.cli.config import RunConfigError
from treadmill.cli.run_dir import load_run

__all__ = ["generate_text"]


def generate_text(run_dir: Path, prompts: list[str], settings: list[str], out: TextIO | None = None,
                  log: TextIO | None = None) -> int:
    """Stream samples for each prompt to `out` (stdout), counts to `log` (stderr); returns the exit code."""
    out, log = out or sys.stdout, log or sys.stderr
    from treadmill.cli.generate import generation_options
    from treadmill.decoding import GenerationConfig
    from treadmill.lm.sampling import stream_text

    loaded = load_run(run_dir)
    if loaded.kind != "lm":
        raise RunConfigError(f"--prompt continues a text with a language model; run '{run_dir}' is a {loaded.kind} run: "
                             "give its inputs as arguments or on stdin instead.")
    options = generation_options(loaded, settings)
    n = int(options.pop("num_return_sequences", 1))
    seed = options.get("seed")
    for prompt in prompts:
        for i in range(n):
            config = GenerationConfig(**{**options, "seed": None if seed is None else int(seed) + i})
            if n > 1:
                print(f"--- sample {i + 1}/{n} ---", file=out, flush=True)
            _stream_one(stream_text(loaded.model, loaded.tgt_tokenizer, prompt, config), prompt, out, log)
    return 0


def _stream_one(pieces: Any, prompt: str, out: TextIO, log: TextIO) -> None:
    """Print the prompt and each piece as it arrives; the count and speed on `log`."""
    started = time.perf_counter()
    out.write(prompt)
    out.flush()
    try:
        for piece in pieces:
            out.write(piece)
            out.flush()  # the terminal sees the text grow, not one block at the end
    except ValueError as err:  # a prompt the tokenizer or the model refuses
        raise RunConfigError(f"`treadmill generate --prompt`: {err}") from err
    out.write("\n")
    out.flush()
    seconds = time.perf_counter() - started
    print(f"[{pieces.tokens} tokens in {seconds:.1f}s, {pieces.tokens / max(seconds, 1e-9):.0f} tokens/s]", file=log, flush=True)
