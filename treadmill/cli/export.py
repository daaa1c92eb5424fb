"""`treadmill export RUN_DIR --merge-lora [--out DIR]`: a LoRA run's adapters merged into its weights.

    run = load_run(RUN_DIR)                 # base model (model.path or built) + the run's adapters
    merged = treadmill.peft.merge_lora(run.model)
    model.name=hf: a transformers directory (save_pretrained + tokenizer.json) in DIR
    other models:  DIR/model.safetensors (the merged state_dict) and DIR/config.yaml without model.lora

Other export formats (--format int8|onnx|fp16) live beside this; merging is the part here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from treadmill.cli.config import RunConfigError

__all__ = ["add_parser", "run", "export_merged"]


def add_parser(commands: Any) -> None:
    """The `export` subcommand's arguments."""
    parser = commands.add_parser("export", help="export a trained run's weights (--merge-lora: LoRA merged)")
    parser.add_argument("run_dir")
    parser.add_argument("--merge-lora", action="store_true", help="merge the run's LoRA adapters into the weights")
    parser.add_argument("--out", help="output directory (default RUN_DIR/export_merged)")


def run(args: argparse.Namespace) -> int:
    """Export; print the output directory as JSON on the last line."""
    if not args.merge_lora:
        raise RunConfigError("treadmill export: say what to export; --merge-lora merges a LoRA run's adapters.")
    run_dir = Path(args.run_dir)
    out = export_merged(run_dir, Path(args.out) if args.out else run_dir / "export_merged")
    print(json.dumps({"merged": str(out)}))
    return 0


def export_merged(run_dir: Path, out: Path) -> Path:
    """Write the run's merged weights into `out` (see the module docstring); returns `out`."""
    from omegaconf import OmegaConf

    from treadmill.checkpoint import export_weights
    from treadmill.cli.run_dir import load_run
    from treadmill.peft import has_lora, merge_lora

    loaded = load_run(run_dir)
    if not has_lora(loaded.model):
        raise RunConfigError(f"'{run_dir}' was trained without model.lora: it has no adapters to merge.")
    merged = merge_lora(loaded.model)
    out.mkdir(parents=True, exist_ok=True)
    if loaded.config.model.name == "hf":
        from treadmill.hf import save_pretrained

        save_pretrained(merged, out, tokenizer=loaded.tgt_tokenizer)
        return out
    export_weights(merged, out / "model.safetensors")
    config = loaded.config.to_dict()
    config["model"].pop("lora", None)
    OmegaConf.save(OmegaConf.create(config), out / "config.yaml")
    return out
