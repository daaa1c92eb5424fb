"""`treadmill serve RUN_DIR [--host 127.0.0.1] [--port 7860] [--export FORMAT]`: a demo page for a run.

The page follows the run: seq2seq runs get n-best decoding with controls and the attention of the
best hypothesis, decoder-only runs a prompt whose continuation streams in, forecasters a plot.
The run is loaded as `generate` loads it (same tokenizers, same weights or `--export`). A run
directory missing files, or a port already in use, ends with a message naming it and exit 2.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from treadmill.cli.config import RunConfigError
from treadmill.cli.run_dir import LoadedRun, add_export_argument, add_refit_argument, load_run

__all__ = ["add_parser", "run", "servable_from_run", "check_port"]


def add_parser(commands: Any) -> None:
    """The `serve` subcommand's arguments."""
    parser = commands.add_parser("serve", help="an interactive demo page for a trained run (needs the demo extra)")
    parser.add_argument("run_dir")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-input-tokens", type=int, default=256,
                        help="the longest input the page accepts (also bounded by the model's max_len)")
    parser.add_argument("--concurrency", type=int, default=2, help="requests decoded at once; others queue")
    add_export_argument(parser)
    add_refit_argument(parser)


def check_port(host: str, port: int) -> None:
    """Refuse a port that something else listens on, before the (slow) model load."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise RunConfigError(f"Cannot serve on {host}:{port}: the port is in use or not available "
                                 f"({err.strerror}). Pick another with --port.") from err


def _input_limit(loaded: LoadedRun, asked: int) -> int:
    """`asked`, bounded by the model's positions less the source's BOS / EOS."""
    max_len = loaded.config.model.fields.get("max_len")
    if max_len is None:
        return asked
    reserved = int(bool(loaded.source_layout.get("bos"))) + int(bool(loaded.source_layout.get("eos")))
    return max(1, min(asked, int(max_len) - reserved - 1))


def servable_from_run(loaded: LoadedRun, max_input_tokens: int = 256, export: str | None = None) -> Any:
    """The Servable of a loaded run: its page kind, tokenizers, decoding defaults and limits."""
    from treadmill.export import ONNX_FORMATS
    from treadmill.serve import Servable

    title = f"{loaded.config.task.name} — {loaded.run_dir.name}" + (f" ({export})" if export else "")
    if loaded.kind == "forecast":
        task = loaded.task
        return Servable(loaded.model, "forecast", title, forecast_windows=task.splits.get("test"),
                        forecast_scale=(float(task.metadata["mean"]), float(task.metadata["std"])))
    kind = "seq2seq" if getattr(loaded.model, "is_encoder_decoder", True) else "lm"
    return Servable(loaded.model, kind, title, src_tokenizer=loaded.src_tokenizer, tgt_tokenizer=loaded.tgt_tokenizer,
                    encode=loaded.source_ids, generation=loaded.config.generation("evaluation"),
                    max_input_tokens=_input_limit(loaded, max_input_tokens), attention=export not in ONNX_FORMATS)


def run(args: argparse.Namespace) -> int:
    """Serve the run's page until interrupted."""
    from treadmill.serve.app import build_app, require_gradio

    run_dir = Path(args.run_dir)
    check_port(args.host, args.port)  # cheap checks first: gradio takes seconds to import
    loaded = load_run(run_dir, task=_is_forecast(run_dir),
                      refit_tokenizers=args.refit_tokenizers, export=args.export)
    try:
        require_gradio()
    except ImportError as err:
        raise RunConfigError(str(err)) from err
    app = build_app(servable_from_run(loaded, args.max_input_tokens, args.export), concurrency=args.concurrency)
    print(f"Serving {run_dir} on http://{args.host}:{args.port} (Ctrl-C stops).", flush=True)
    app.launch(server_name=args.host, server_port=args.port, quiet=True, show_error=False)
    return 0


def _is_forecast(run_dir: Path) -> bool:
    """Whether task.json says the run forecasts (its page needs the task's test windows)."""
    import json

    path = run_dir / "task.json"
    try:
        return path.is_file() and json.loads(path.read_text()).get("kind") == "forecast"
    except ValueError:
        return False
