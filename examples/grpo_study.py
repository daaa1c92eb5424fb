"""GRPO against the teacher-forcing control, at equal extra wall time, from one teacher-forced model.

Every variant loads the finished teacher-forced run BASE (its checkpoints), fine-tunes it for a
sequence-level phase and scores the test split greedily. The control (more teacher forcing,
`method=mle`) runs last, for as many steps as fit in the longest phase of the other variants
(timed by a 40-step probe of the control just before).
The rows of docs/exposure_bias.md's GRPO table come from this script.

    treadmill train examples/addition.yaml training.epochs=4 --run-dir runs/addition_base
    python examples/grpo_study.py examples/addition_grpo.yaml runs/addition_base 4 40 grpo-per grpo-checker
    # arguments: GRPO config, base run, its epochs, the variants' max_steps, the variants[, -- overrides for all]
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from treadmill.cli.config import load_run_config
from treadmill.cli.train import train_run

# Each variant: overrides of the GRPO config (the phase's method and options).
VARIANTS = {
    "grpo-checker": ["sequence_level.reward=checker"],
    "grpo-exact": ["sequence_level.reward=exact_match"],
    "grpo-per": ["sequence_level.reward=per"],
    "grpo-per-mle": ["sequence_level.reward=per", "sequence_level.mle_weight=0.1"],
    "consistency": ["sequence_level.method=consistency", "sequence_level.consistency_lambda=1.0"],
    "consistency-0.1": ["sequence_level.method=consistency", "sequence_level.consistency_lambda=0.1"],
    "mrt": ["sequence_level.method=mrt", "sequence_level.n_candidates=4", "sequence_level.reward=per"],
}


def phase_seconds(run_dir: Path) -> tuple[float, int]:
    """(seconds, steps) of the fine-tuning phase, from its steps.csv (the last logged step)."""
    rows = list(csv.DictReader((run_dir / "finetune" / "steps.csv").open()))
    return float(rows[-1]["elapsed_s"]), int(rows[-1]["step"])


EXTRA: list[str] = []  # overrides after `--` on the command line, for every variant and the control


def run(config_path: str, base: str, epochs: str, name: str, overrides: list[str], out: Path) -> dict:
    """Fine-tune the base model with one variant; its test figures and phase time."""
    # Smaller batches than the teacher-forced phase's: GRPO decodes group_size samples per source.
    common = [f"training.epochs={epochs}", f"training.checkpoint_dir={base}/checkpoints", "training.resume_from=last",
              "training.log_frequency=1", "data.max_tokens=512"]
    config = load_run_config(config_path, [*common, *EXTRA, *overrides])
    started = time.perf_counter()
    summary = train_run(config, out / name)
    seconds, steps = phase_seconds(out / name)
    return {"variant": name, "steps": steps, "phase_s": round(seconds, 1), "wall_s": round(time.perf_counter() - started, 1),
            "test_exact_match": summary["test"]["exact_match"]}


def main() -> None:
    args = sys.argv[1:]
    if "--" in args:
        EXTRA.extend(args[args.index("--") + 1 :])
        args = args[: args.index("--")]
    config_path, base, epochs, max_steps, *names = args
    out = Path(f"runs/grpo_study/{Path(base).name}")
    rows = [run(config_path, base, epochs, name, [*VARIANTS[name], f"sequence_level.max_steps={max_steps}"], out)
            for name in names]
    probe = run(config_path, base, epochs, "control-probe", ["sequence_level.method=mle", "sequence_level.max_steps=40"], out)
    budget = max(r["phase_s"] for r in rows)  # the control gets as long as the longest variant took
    steps = max(1, round(budget / (probe["phase_s"] / probe["steps"])))
    rows.append(run(config_path, base, epochs, "control", ["sequence_level.method=mle", f"sequence_level.max_steps={steps}"], out))
    for row in rows:
        print(json.dumps(row, default=float))


if __name__ == "__main__":
    main()
