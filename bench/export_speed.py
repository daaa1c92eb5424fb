"""Decode speed and accuracy of a run's exports: fp32 eager vs int8 (PyTorch) vs onnxruntime fp32 and int8.

For a finished seq2seq run (the G2P demo model) with `treadmill export RUN --format int8`,
`--format onnx` and `--format onnx-int8` written, it measures decode tokens/s at batch 1 and
batch 32, greedy and beam search, one thread each, the four backends interleaved batch by batch
(fp32, int8, ort, ort-int8 on the same batch, then the next: a load spike from another process
hits all of them alike), and
reports the median of the rounds with the ratio to fp32 eager. Then it decodes the whole test split greedily with each backend and reports
WER (a word is wrong unless every phoneme is right) and whether the outputs equal fp32's.

    treadmill train examples/g2p.yaml --run-dir runs/g2p-demo
    for f in int8 onnx onnx-int8; do treadmill export runs/g2p-demo --format $f; done
    OMP_NUM_THREADS=1 python bench/export_speed.py runs/g2p-demo            # ~10 minutes
    OMP_NUM_THREADS=1 python bench/export_speed.py runs/g2p-demo --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from treadmill.cli.run_dir import load_run
from treadmill.constants import PAD_ID
from treadmill.decoding import generate

BACKENDS = ("fp32", "int8", "ort", "ort-int8")


def _batches(rows: list[list[int]], size: int) -> list[torch.Tensor]:
    out = []
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        width = max(map(len, chunk))
        out.append(torch.tensor([r + [PAD_ID] * (width - len(r)) for r in chunk]))
    return out


def _decode(model: torch.nn.Module, batches: list[torch.Tensor], options: dict) -> tuple[list[list[int]], float]:
    """(best output ids per row, seconds) for the batches."""
    outputs: list[list[int]] = []
    start = time.perf_counter()
    for src in batches:
        outputs += generate(model, src, src == PAD_ID, **options).sequences
    return outputs, time.perf_counter() - start


def _wer(hypotheses: list[str], references: list[list[str]]) -> float:
    """Share of words whose hypothesis is none of their references (the task's WER)."""
    return sum(h not in refs for h, refs in zip(hypotheses, references, strict=True)) / len(hypotheses)


def _profile(models: dict[str, torch.nn.Module], batches: list[torch.Tensor], options: dict) -> None:
    """Where batch-1 greedy decoding spends its time in fp32 and int8: the top operators by self CPU time."""
    from torch.profiler import profile

    for backend in ("fp32", "int8"):
        _decode(models[backend], batches, options)
        with profile() as prof:
            _decode(models[backend], batches, options)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        top = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f}% ({e.self_cpu_time_total / e.count:.0f} us"
                        f" x {e.count})" for e in events[:5])
        print(f"\nbatch-1 greedy profile, {backend}: {total / 1e3:.0f} ms of operators; {top}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--words", type=int, default=96, help="test words decoded per speed measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="few words, one round, WER on 300 words")
    parser.add_argument("--no-profile", action="store_true", help="skip the batch-1 operator profile")
    args = parser.parse_args()
    torch.set_num_threads(1)
    words, rounds = (16, 1) if args.quick else (args.words, args.rounds)

    base = load_run(args.run_dir, task=True)
    models = {"fp32": base.model.eval(), "int8": load_run(args.run_dir, export="int8").model,
              "ort": load_run(args.run_dir, export="onnx").model,
              "ort-int8": load_run(args.run_dir, export="onnx-int8").model}
    task = base.task
    test = task.splits["test"]
    rows = [[int(t) for t in test[i]["src"]] for i in range(len(test))]
    max_len = int(base.config.generation("evaluation").get("max_len", 32))
    settings = {"greedy": {"strategy": "greedy", "max_len": max_len},
                "beam": {"strategy": "beam", "beam_size": args.beam, "max_len": max_len}}
    print(f"run {args.run_dir}: {type(base.model).__name__}, {sum(p.numel() for p in base.model.parameters()):,} "
          f"parameters; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")

    # Speed: tokens/s per (batch size, strategy). The backends take turns batch by batch (fp32,
    # int8, ort, ort-int8 on batch 1, then on batch 2, ...), so a burst of load from another process falls
    # on all three alike; each round's tokens/s is its tokens over its summed decode time.
    speed: dict[tuple[int, str, str], list[float]] = {}
    same: dict[tuple[int, str, str], bool] = {}
    for batch_size in (1, 32):
        n = words if batch_size == 1 else (32 if args.quick else max(words, 4 * 32))
        batches = _batches(rows[:n], batch_size)
        for name, options in settings.items():
            for backend in BACKENDS:  # a warm-up pass each, not timed
                _decode(models[backend], batches[:2], options)
            for _ in range(rounds):
                seconds = dict.fromkeys(BACKENDS, 0.0)
                outputs: dict[str, list[list[int]]] = {backend: [] for backend in BACKENDS}
                for batch in batches:
                    for backend in BACKENDS:
                        out, spent = _decode(models[backend], [batch], options)
                        outputs[backend] += out
                        seconds[backend] += spent
                for backend in BACKENDS:
                    tokens = sum(len(o) + 1 for o in outputs[backend])  # each output's tokens and its EOS
                    speed.setdefault((batch_size, name, backend), []).append(tokens / seconds[backend])
                    same[(batch_size, name, backend)] = outputs[backend] == outputs["fp32"]
    print(f"\ndecode tokens/s, median of {rounds} interleaved round(s), one thread "
          f"(load average now {os.getloadavg()[0]:.1f})")
    print(f"{'batch':>5} {'search':>8} " + " ".join(f"{b:>16}" for b in BACKENDS))
    for batch_size in (1, 32):
        for name in settings:
            base_speed = statistics.median(speed[(batch_size, name, "fp32")])
            cells = []
            for backend in BACKENDS:
                value = statistics.median(speed[(batch_size, name, backend)])
                mark = "" if same[(batch_size, name, backend)] else "*"
                cells.append(f"{value:8.0f} ({value / base_speed:4.2f}x){mark}")
            print(f"{batch_size:>5} {name:>8} " + " ".join(f"{c:>16}" for c in cells))
    print("(* outputs differ from fp32 eager's on these words)")

    if not args.no_profile:
        _profile(models, _batches(rows[:16], 1), settings["greedy"])

    # Accuracy: the test split decoded greedily by each backend.
    n_wer = 300 if args.quick else len(rows)
    batches = _batches(rows[:n_wer], 256)
    refs = task.references["test"][:n_wer] if task.references and "test" in task.references else [
        [base.tgt_tokenizer.decode([t for t in test[i]["tgt"].tolist() if t > 3])] for i in range(n_wer)]
    decoded = {}
    print(f"\ntest WER, greedy, {n_wer} words (beam {args.beam} for fp32 and the int8 exports too)")
    for backend in BACKENDS:
        outputs, seconds = _decode(models[backend], batches, settings["greedy"])
        decoded[backend] = outputs
        texts = [base.tgt_tokenizer.decode(o) for o in outputs]
        line = f"  {backend:5s} greedy WER {100 * _wer(texts, refs):6.2f}%  ({seconds:5.1f} s)"
        if backend != "fp32":
            equal = sum(a == b for a, b in zip(outputs, decoded["fp32"], strict=True))
            line += f"  outputs equal to fp32: {equal}/{n_wer}"
        if backend in ("fp32", "int8", "ort-int8"):
            beam_outputs, _ = _decode(models[backend], _batches(rows[:n_wer], 64), settings["beam"])
            line += f"  beam WER {100 * _wer([base.tgt_tokenizer.decode(o) for o in beam_outputs], refs):6.2f}%"
        print(line, flush=True)


if __name__ == "__main__":
    main()
