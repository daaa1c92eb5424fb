"""Merging a LoRA run's adapters into its weights, for `treadmill export RUN_DIR --merge-lora [--out DIR]`.

    run = load_run(RUN_DIR)                 # base model (model.path or built) + the run's adapters
    merged = treadmill.peft.merge_lora(run.model)
    model.name=hf: a transformers directory (save_pretrained + tokenizer.json) in DIR
    other models:  DIR/model.safetensors (the merged state_dict) and DIR/config.yaml without model.lora
                   (nor model.init_from)

Kept apart from export.py (the --format exports) so that the export command only adds a flag.
"""

from __future__ import annotations

from pathlib import Path

from treadmill.cli.config import RunConfigError

__all__ = ["export_merged", "default_out"]


def default_out(run_dir: Path) -> Path:
    """Where --merge-lora writes without --out."""
    return run_dir / "export" / "merged"


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
    config["model"].pop("init_from", None)  # the merged weights are whole: no base to read from another run
    OmegaConf.save(OmegaConf.create(config), out / "config.yaml")
    return out
