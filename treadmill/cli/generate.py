"""`treadmill generate RUN_DIR [TEXT ...]`: decode raw inputs with a finished run.

Language-model runs take `--prompt TEXT` (or their inputs as prompts) and stream the continuation
(treadmill.cli.lm_generate).

One output line per input line, blank ones included (a blank input gives a blank output), so the
outputs line up with the inputs. With `--set num_return_sequences=N`, N lines per input, each
`input<TAB>rank<TAB>score<TAB>hypothesis`, best first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from treadmill.cli.attention import AttentionPicture
from treadmill.cli.config import RunConfigError, parse_overrides
from treadmill.cli.run_dir import LoadedRun, add_export_argument, add_refit_argument, load_run
from treadmill.constants import PAD_ID
from treadmill.training.progress import progress_task

__all__ = ["add_parser", "run", "generate_lines"]


def add_parser(commands: Any) -> None:
    """The `generate` subcommand's arguments."""
    parser = commands.add_parser("generate", help="decode inputs with a trained run (one output per input)")
    parser.add_argument("run_dir")
    parser.add_argument("texts", nargs="*", help="inputs; read from stdin, one per line, when none are given")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                        help="generation setting, e.g. --set strategy=beam --set beam_size=5")
    parser.add_argument("--prompt", help="(language-model runs) the text to continue; the output streams as it is sampled")
    parser.add_argument("--attention", metavar="PNG", help="write the attention heatmap of the first input")
    add_refit_argument(parser)
    add_export_argument(parser)
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="onnxruntime: decode with the run's ONNX export (--export onnx, or onnx-int8 "
                             "when given)")
    parser.add_argument("--layer", type=int, default=None, help="(--attention) decoder layer, from 1 (default: the last)")
    parser.add_argument("--head", default="all",
                        help="(--attention) a head number from 1, 'mean' (their average) or 'all' (a grid, default)")


def run(args: argparse.Namespace) -> int:
    """Print the outputs, one (or num_return_sequences) per input line."""
    if not args.attention and (args.layer is not None or args.head != "all"):
        raise RunConfigError("--layer and --head choose what --attention PNG draws; give --attention too.")
    if args.prompt is not None or _is_lm_run(Path(args.run_dir)):
        from treadmill.cli.lm_generate import generate_text

        if args.export is not None or args.backend != "torch":
            raise RunConfigError("--export and --backend apply to seq2seq runs; a language-model run samples "
                                 "with its PyTorch weights.")
        prompts = [args.prompt] if args.prompt is not None else (args.texts or read_stdin_lines())
        return generate_text(Path(args.run_dir), prompts, args.settings)
    export = chosen_export(args.export, args.backend)
    texts = args.texts or read_stdin_lines()
    picture = AttentionPicture(Path(args.attention), args.layer, args.head) if args.attention else None
    for output in generate_lines(Path(args.run_dir), texts, args.settings, picture,
                                 refit_tokenizers=args.refit_tokenizers, export=export):
        print(output, flush=True)
    return 0


def _is_lm_run(run_dir: Path) -> bool:
    """Whether the run's task.json says it is a language model (its inputs are prompts)."""
    import json

    try:
        return json.loads((run_dir / "task.json").read_text()).get("kind") == "lm"
    except (OSError, ValueError, AttributeError):
        return False  # load_run names what is wrong with the run directory


def chosen_export(export: str | None, backend: str) -> str | None:
    """The export to load from --export and --backend (onnxruntime runs the onnx or onnx-int8 export)."""
    from treadmill.export import ONNX_FORMATS

    if backend == "onnxruntime":
        if export is not None and export not in ONNX_FORMATS:
            raise RunConfigError(f"--backend onnxruntime runs the onnx export (or onnx-int8); --export {export} "
                                 "is a PyTorch model.")
        return export or "onnx"
    return export


def generation_options(loaded: LoadedRun, settings: list[str]) -> dict[str, Any]:
    """The run's evaluation decoding options with `--set` settings over them, checked."""
    from treadmill.decoding import GenerationConfig
    from treadmill.decoding.config import strategy_only_fields

    options = loaded.config.generation("evaluation")
    overrides = parse_overrides(settings)
    if "strategy" in overrides:  # the run's settings for another strategy do not carry over
        options = {k: v for k, v in options.items() if k not in strategy_only_fields(exclude=overrides["strategy"])}
    options.update(overrides)
    try:
        GenerationConfig(**options)
    except (TypeError, ValueError) as err:
        raise RunConfigError(f"generation settings {options}: {err}") from err
    return options


def read_stdin_lines() -> list[str]:
    """The lines of standard input, decoded as UTF-8 whatever the locale; a bad byte is named."""
    from treadmill.data.text_files import decode_utf8

    return decode_utf8(sys.stdin.buffer.read(), "<stdin>").splitlines()


def generate_lines(run_dir: Path, texts: list[str], settings: list[str],
                   attention: AttentionPicture | None = None, refit_tokenizers: bool = False,
                   export: str | None = None) -> list[str]:
    """The output lines for the input texts (see the module docstring for their layout); `export`
    decodes with the run's exported model (int8, fp16, or onnx / onnx-int8 on onnxruntime)."""
    from treadmill.export import ONNX_FORMATS
    from treadmill.seq2seq.evaluation import decode_loader

    if attention is not None and export in ONNX_FORMATS:
        raise RunConfigError(f"--attention needs attention weights, which the {export} export does not return; "
                             "draw it with the PyTorch model (no --export / --backend).")
    loaded = load_run(run_dir, refit_tokenizers=refit_tokenizers, export=export)
    if loaded.kind != "seq2seq":
        raise RunConfigError(f"`treadmill generate` decodes text; run '{run_dir}' is a {loaded.kind} run.")
    options = generation_options(loaded, settings)
    filled = [i for i, text in enumerate(texts) if text.strip()]  # blank lines are not decoded
    rows = [loaded.source_ids(texts[i]) for i in filled]
    # Many lines take a while: a bar on stderr (stdout holds the outputs, one per input line).
    with progress_task("generating", len(rows), "lines", stream=sys.stderr) as bar:
        try:
            decoded = decode_loader(loaded.model, _batches(rows, loaded.config.data.eval_batch_size), options,
                                    keep_hypotheses=True, on_batch=lambda batch: bar.advance(len(batch.rows)))
        except ValueError as err:  # e.g. an input longer than the model's context
            raise RunConfigError(f"`treadmill generate` on {run_dir}: {err}") from err
    outputs = {i: [(score, loaded.tgt_tokenizer.decode(h)) for h, score in zip(hyps, scores, strict=True)]
               for i, hyps, scores in zip(filled, decoded.hypotheses, decoded.scores, strict=True)}
    n = int(options.get("num_return_sequences", 1))
    lines: list[str] = []
    for i, text in enumerate(texts):
        scored = outputs.get(i, [])
        if n == 1:
            lines.append(scored[0][1] if scored else "")
        else:  # input, rank, score, hypothesis; a blank input keeps one line of its own
            lines.extend([f"{text}\t{rank}\t{score:.4f}\t{hyp}" for rank, (score, hyp) in enumerate(scored, start=1)]
                         or [f"{text}\t\t\t"])
    if attention is not None and filled:
        path = attention.write(loaded, rows[0], decoded.hypotheses[0][0], texts[filled[0]])
        print(f"Wrote {path}", file=sys.stderr)
    return lines


def _batches(rows: list[list[int]], batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The source id lists as right-padded batches, as the datasets collate them."""
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(r) for r in chunk)
        src = torch.tensor([r + [PAD_ID] * (width - len(r)) for r in chunk])  # (batch, src_len)
        batches.append({"src": src, "src_padding_mask": src == PAD_ID, "index": torch.arange(start, start + len(chunk))})
    return batches
