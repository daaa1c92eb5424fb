"""`treadmill sweep CONFIG.yaml key=v1,v2 [key2=a,b ...] [--rows ROWS.yaml] [--sweep-dir DIR]`: run a
grid of config overrides, each in its own directory, into experiments.md and experiments.csv.

A grid is the cartesian product of its items. An ablation table is not a product: `--rows` names
a YAML file of rows, each a name and its own dotted overrides (merged over the config, then the
grid's overrides on top; with both, every row runs every grid combination)::

    rows:
      - {name: E0}                                         # the base config
      - {name: E2, overrides: {training.optimizer.lr: 3.0e-4}}
      - {name: E7, overrides: {model.pooling: attention}}

Every run is validated before the first one trains, so a bad value fails in seconds.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

from treadmill.callbacks.base import infer_mode
from treadmill.cli.config import RunConfigError, load_run_config
from treadmill.training.epoch_summary import format_duration

__all__ = ["add_parser", "run", "parse_grid", "run_sweep", "run_status", "sweep_eta", "write_tables"]


def add_parser(commands: Any) -> None:
    """The `sweep` subcommand's arguments."""
    parser = commands.add_parser("sweep", help="run a grid of overrides and tabulate the results")
    parser.add_argument("config")
    parser.add_argument("grid", nargs="*", help="key=v1,v2 (one per swept key) or key=value (fixed)")
    parser.add_argument("--rows", help="YAML file of named rows of overrides (an ablation table)")
    parser.add_argument("--sweep-dir", help="default runs/sweep-<config name>")


def run(args: argparse.Namespace) -> int:
    """Run the grid; exit 1 when a run failed (the table lists every run either way)."""
    if not args.grid and not args.rows:
        raise RunConfigError("treadmill sweep needs a grid (key=v1,v2 ...), --rows ROWS.yaml, or both.")
    sweep_dir = Path(args.sweep_dir or Path("runs") / f"sweep-{Path(args.config).stem}")
    rows = run_sweep(Path(args.config), args.grid, sweep_dir, rows_path=Path(args.rows) if args.rows else None)
    failed = sum(row["status"] == "failed" for row in rows)
    print(f"{len(rows)} runs ({failed} failed): {sweep_dir / 'experiments.md'}")
    return 1 if failed else 0


def parse_grid(items: list[str]) -> list[list[str]]:
    """Every combination of `key=v1,v2` items as lists of `key=value` overrides."""
    axes = []
    for item in items:
        if "=" not in item:
            raise RunConfigError(f"Bad sweep item {item!r}: write key=v1,v2 (or key=value for a fixed setting).")
        key, values = item.split("=", 1)
        choices = [v for v in values.split(",") if v != ""]
        if not choices:
            raise RunConfigError(f"Sweep item {item!r} has no values.")
        axes.append([f"{key}={v}" for v in choices])
    return [list(combo) for combo in itertools.product(*axes)]


def _run_name(overrides: list[str], row: str | None = None) -> str:
    # the key's last part with its value: training.optimizer.lr=3e-4 -> lr=3e-4 (values keep their dots)
    name = ",".join(o.split("=", 1)[0].split(".")[-1] + "=" + o.split("=", 1)[1] if "=" in o else o for o in overrides)
    name = "-".join(part for part in (row, name) if part) or "base"
    return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in name)


def read_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The named rows of a rows file: [(name, {dotted.key: value})], names unique."""
    from treadmill.cli.config import read_yaml
    from treadmill.validation import check_keys

    raw = read_yaml(path, "rows file")
    # `config:` names the base config the rows were written for (documentation; tests validate them on it)
    check_keys(f"rows file '{path}'", raw, ["rows", "config"])
    items = raw.get("rows")
    if not isinstance(items, list) or not items:
        raise RunConfigError(f"Rows file '{path}' needs `rows:`, a non-empty list of {{name: ..., overrides: {{...}}}}.")
    rows: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise RunConfigError(f"Rows file '{path}': row {index} must be a mapping with a name, got {item!r}.")
        check_keys(f"rows file '{path}', row {item['name']!r}", item, ["name", "overrides", "note"])
        overrides = item.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise RunConfigError(f"Rows file '{path}', row {item['name']!r}: overrides must map dotted keys to values.")
        if item["name"] in [name for name, _ in rows]:
            raise RunConfigError(f"Rows file '{path}': row name {item['name']!r} is used twice.")
        rows.append((item["name"], {str(k): v for k, v in overrides.items()}))
    return rows


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RunConfigError(f"Override {key!r} sets a key inside {part!r}, which another override sets to a value.")
        node[leaf] = value
    return out


def _row_config(config_path: Path, row: dict[str, Any], overrides: list[str]) -> Any:
    """The checked run config of the base file, a row's overrides, then the grid's."""
    from treadmill.cli.config import merge_configs, parse_overrides, read_yaml, run_config_from_dict

    if not config_path.is_file():
        raise RunConfigError(f"Config file '{config_path}' does not exist. The examples are in examples/*.yaml.")
    raw = merge_configs(read_yaml(config_path, "config file"), _nested(row))
    return run_config_from_dict(merge_configs(raw, parse_overrides(overrides)))


def _describe(row: dict[str, Any]) -> list[str]:
    import json as _json

    return [f"{k}={v if isinstance(v, str) else _json.dumps(v)}" for k, v in row.items()]


def run_status(summary: dict[str, Any], monitor: str) -> str:
    """ok, diverged (non-finite metrics) or collapsed (final validation metric far from its best)."""
    valid = summary.get("history", {}).get(monitor, [])
    values = [v for v in valid if isinstance(v, (int, float))]
    if any(not math.isfinite(v) for v in values) or not math.isfinite(summary.get("train", {}).get("loss", 0.0)):
        return "diverged"
    if len(values) >= 2 and "loss" not in monitor:
        if infer_mode(monitor) == "min":  # an error rate: judge the share it gets right
            values = [1.0 - v for v in values]
        best, last = max(values), values[-1]
        if best > 0 and last < 0.5 * best:
            return "collapsed"
    return "ok"


def run_sweep(config_path: Path, grid: list[str], sweep_dir: Path, rows_path: Path | None = None) -> list[dict[str, Any]]:
    """Train every row x combination (skipping finished ones), record failures, write the tables."""
    from treadmill.cli.train import train_run
    from treadmill.distributed import broadcast_object, is_main_process, launched_world_size

    main = is_main_process()
    # Under torchrun a failed run cannot be recorded and skipped: the other ranks would wait for it
    # forever inside the next run's collectives. It stops the sweep, and torchrun stops every rank.
    distributed = launched_world_size() > 1
    named: list[tuple[str | None, dict[str, Any]]] = [*read_rows(rows_path)] if rows_path is not None else [(None, {})]
    runs = [(name, row, overrides) for name, row in named for overrides in (parse_grid(grid) if grid else [[]])]
    # all checked before the first run
    configs = [_row_config(config_path, row, overrides) if name is not None else load_run_config(config_path, overrides)
               for name, row, overrides in runs]
    combos = [[*_describe(row), *overrides] for _, row, overrides in runs]
    rows: list[dict[str, Any]] = []
    durations: list[float] = []  # wall time of each run trained here: the sweep's ETA
    sweep_started = time.perf_counter()
    for index, overrides in enumerate(combos, start=1):
        row_name = runs[index - 1][0]
        run_dir = sweep_dir / (_run_name(runs[index - 1][2], row_name) if row_name else _run_name(overrides))
        summary_path = run_dir / "summary.json"
        if main:
            print(f"[{index}/{len(combos)}] {' '.join(overrides) or '(base config)'} -> {run_dir}"
                  f"{sweep_eta(time.perf_counter() - sweep_started, durations, len(combos) - index + 1)}", flush=True)
        if broadcast_object(summary_path.exists()):  # rank 0's disk decides for every rank
            if main:
                print("  finished before; skipped", flush=True)
            summary = json.loads(summary_path.read_text()) if main else {}
        else:
            started = time.perf_counter()
            try:
                summary = train_run(configs[index - 1], run_dir)
            except Exception as err:  # noqa: BLE001 - a failing run is recorded, the sweep goes on
                if distributed:
                    raise
                summary = {"status": "failed", "error": f"{type(err).__name__}: {err}", "wall_seconds": time.perf_counter() - started}
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "error.txt").write_text(traceback.format_exc())
            durations.append(time.perf_counter() - started)
        rows.append(({"row": row_name} if row_name else {}) | _row(overrides, summary, configs[index - 1].training.monitor))
        if main:  # under torchrun the other ranks train but have no results to write
            write_tables(rows, sweep_dir)
    return rows


def sweep_eta(elapsed: float, durations: list[float], left: int) -> str:
    """'  (sweep 3:10 so far, ETA 6:20)': the mean run time so far times the runs left (this one
    included); empty before any run has been timed."""
    if not durations:
        return ""
    return (f"  (sweep {format_duration(elapsed)} so far, "
            f"ETA {format_duration(left * sum(durations) / len(durations))})")


def _row(overrides: list[str], summary: dict[str, Any], monitor: str) -> dict[str, Any]:
    history = _history(summary)
    values = history.get(monitor, [])
    row: dict[str, Any] = {"overrides": " ".join(overrides), "status": summary.get("status") or run_status({**summary, "history": history}, monitor)}
    if values:
        best = (min if infer_mode(monitor) == "min" else max)(values)
        row.update({"monitor": monitor, "best": best, "best_epoch": values.index(best) + 1})
    for split in ("valid", "test"):
        for key, value in (summary.get(split) or {}).items():
            metric, _, group = key.partition("/")  # a group's metric (exact_match/n_demos=3): exact match only
            wanted = metric == "exact_match" if group else metric.split("_")[-1] in _TABLE_METRICS
            if isinstance(value, (int, float)) and wanted:
                row[f"{split}:{key.removeprefix('val_')}"] = value
    train_accuracy = (summary.get("train") or {}).get("sequence_accuracy")
    if isinstance(train_accuracy, (int, float)):  # the overfit test's (E1) verdict
        row["train:sequence_accuracy"] = train_accuracy
    row["train_s"] = round(float(summary.get("train_seconds", 0.0)), 1)
    row["wall_s"] = round(float(summary.get("wall_seconds", 0.0)), 1)
    row["alarms"] = alarm_cell(summary.get("alarms") or [])
    if "error" in summary:
        row["error"] = summary["error"][:120]
    return row


_TABLE_METRICS = ("loss", "match", "accuracy", "bleu", "wer", "per", "mase", "nostress", "gap")


def alarm_cell(alarms: list[dict[str, Any]]) -> str:
    """The run's health alarms in one cell: 'drift set_encoder @120 x3; grad_spike decoder @40'."""
    return "; ".join(f"{a.get('kind')} {a.get('subject')} @{a.get('step')}" + (f" x{a['count']}" if a.get("count", 1) > 1 else "")
                     for a in alarms) or "none"


def _history(summary: dict[str, Any]) -> dict[str, list[float]]:
    return summary.get("history", {})


def write_tables(rows: list[dict[str, Any]], sweep_dir: Path) -> None:
    """experiments.csv and experiments.md with one row per run."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(sweep_dir / "experiments.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    (sweep_dir / "experiments.md").write_text("\n".join(lines) + "\n")
