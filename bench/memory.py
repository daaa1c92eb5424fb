"""Memory per rank: DDP vs FSDP at 2 ranks, and activation checkpointing on a 6-layer GPT (CPU).

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/memory.py            # everything, 1 thread a process
    PYTHONPATH=. python bench/memory.py --only activations           # the single-process part alone

Part 1 launches `torchrun --standalone --nproc_per_node=2` for each strategy in turn (ddp, fsdp,
same model, same batches) and trains 2 optimizer steps with the Trainer. Right before the second
step (gradients present, AdamW's moments allocated by the first) a callback counts, per rank, the
bytes of the tensors the rank holds: its parameters, its gradients and its optimizer state; under
FSDP these are DTensors and their local shards (`to_local()`) are counted. That is the
"parameter + gradient + optimizer" memory the strategies differ in. Beside it, each rank's peak
resident set (getrusage ru_maxrss) less its resident set before the model was built: the real
process growth, which also holds DDP's gradient buckets, FSDP's all-gathered block parameters,
activations and allocator slack.

Part 2 runs in this process. A TorchDispatchMode records every tensor storage an operator creates
during one forward + backward, and which of them are still alive (storage weak references) after
each operator: the peak of live bytes is the step's peak memory above the weights. Gradients are
in it in both cases and are subtracted, leaving the activation peak (saved activations, and with
checkpointing one block's recomputed activations during backward). Step time is forward +
backward + AdamW step, the two settings interleaved, median of several steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from treadmill import OptimizerConfig, Trainer, TrainingConfig  # noqa: E402
from treadmill.activation_checkpointing import enable_activation_checkpointing  # noqa: E402
from treadmill.callbacks.base import Callback  # noqa: E402
from treadmill.models import GPT, GPTConfig, TransformerSeq2Seq, TransformerSeq2SeqConfig  # noqa: E402

# BART-base's shape (6 + 6 layers of width 768, FFN 3072, 12 heads) with a 16k vocabulary, and a
# 12-layer GPT of width 1024 (GPT-2 medium's width, half its depth).
MODELS = {
    "bart-sized": lambda: TransformerSeq2Seq(TransformerSeq2SeqConfig(
        src_vocab_size=16000, tgt_vocab_size=16000, d_model=768, n_heads=12, n_encoder_layers=6, n_decoder_layers=6,
        d_ff=3072, dropout=0.0, max_len=64, share_vocab=True)),
    "gpt-12x1024": lambda: GPT(GPTConfig(vocab_size=16000, d_model=1024, n_heads=16, n_layers=12, d_ff=4096, max_len=64,
                                         dropout=0.0)),
}
BATCH, LENGTH = 2, 32


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _local_bytes(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


class TokenBatches(Dataset):
    """Random token rows as dict batches for either model family."""

    def __init__(self, seq2seq: bool, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(3, 16000, (n, LENGTH + 1), generator=g)
        self.seq2seq = seq2seq

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        row = self.tokens[i]
        if self.seq2seq:
            return {"src": row[:-1], "tgt_in": row[:-1], "target": row[1:]}
        return {"tokens": row[:-1], "target": row[1:]}


def token_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position."""
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


class CountBeforeStep(Callback):
    """Counts this rank's parameter, gradient and optimizer-state bytes before each optimizer step."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def on_before_optimizer_step(self, trainer) -> None:
        params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
        state = [t for s in trainer.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        self.counts = {
            "parameters": sum(_local_bytes(p) for p in params),
            "gradients": sum(_local_bytes(p.grad) for p in params if p.grad is not None),
            "optimizer": sum(_local_bytes(t) for t in state),
        }


def shard_worker(model_name: str, strategy: str, out: Path) -> None:
    """One rank of part 1: two steps, then this rank's counts as JSON."""
    torch.set_num_threads(1)
    before = _rss_bytes()
    torch.manual_seed(0)
    model = MODELS[model_name]()
    n_params = sum(p.numel() for p in model.parameters())
    loader = DataLoader(TokenBatches(model_name.startswith("bart")), batch_size=BATCH)
    counter = CountBeforeStep()
    config = TrainingConfig(epochs=1, max_steps=2, seed=0, device="cpu", progress_bar=False, strategy=strategy,
                            optimizer=OptimizerConfig("AdamW", lr=1e-4), detect_non_finite=False, check_embedding_inputs=False)
    trainer = Trainer(model, config, loader, loss_fn=token_loss, callbacks=[counter])
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rank = trainer.dist.rank
    result = {"rank": rank, "n_params": n_params, **counter.counts, "rss_growth": peak - before, "fit_s": seconds}
    (out / f"{model_name}-{strategy}-{rank}.json").write_text(json.dumps(result))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sharding_table(models: list[str]) -> list[dict]:
    """Part 1: launch both strategies for each model and collect rank 0's and rank 1's counts."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            for strategy in ("ddp", "fsdp"):
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
                       "--worker", name, strategy, tmp]
                env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
                if done.returncode != 0:
                    raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
                ranks = [json.loads((Path(tmp) / f"{name}-{strategy}-{r}.json").read_text()) for r in (0, 1)]
                rows.append({"model": name, "strategy": strategy, "ranks": ranks})
    return rows


class LiveBytes(TorchDispatchMode):
    """Peak bytes of live tensor storages created by operators while the mode is active."""

    def __init__(self, existing: list[torch.Tensor]) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.existing = {t.untyped_storage().data_ptr() for t in existing}  # views of weights are not new memory
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # Forget what was freed first: the allocator may hand a freed address to this op's output.
        for key, (ref, size) in list(self.live.items()):
            if ref.expired():
                del self.live[key]
                self.current -= size
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and not tensor.is_meta:
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live and key not in self.existing:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def _gpt6() -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=2000, d_model=256, n_heads=4, n_layers=6, d_ff=1024, max_len=256, dropout=0.0))
    tokens = torch.randint(3, 2000, (8, 129), generator=torch.Generator().manual_seed(0))
    return model, {"tokens": tokens[:, :-1], "target": tokens[:, 1:]}


def activation_peak(checkpointing: bool) -> dict:
    """Part 2: the activation peak of one forward + backward of the 6-layer GPT."""
    model, batch = _gpt6()
    if checkpointing:
        enable_activation_checkpointing(model)
    with LiveBytes([*model.parameters(), *model.buffers(), *batch.values()]) as live:
        token_loss(model(batch["tokens"]), batch["target"]).backward()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return {"peak": live.peak, "gradients": grads, "activations": live.peak - grads}


def step_times(repeats: int = 7) -> dict[bool, float]:
    """Median seconds of forward + backward + AdamW step, with and without checkpointing, interleaved."""
    setups = {}
    for checkpointing in (False, True):
        model, batch = _gpt6()
        if checkpointing:
            enable_activation_checkpointing(model)
        setups[checkpointing] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), batch)
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(repeats + 1):
        for checkpointing, (model, optimizer, batch) in setups.items():
            started = time.perf_counter()
            token_loss(model(batch["tokens"]), batch["target"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i:  # the first round warms up
                times[checkpointing].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "STRATEGY", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["sharding", "activations"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    if args.worker:
        shard_worker(args.worker[0], args.worker[1], Path(args.worker[2]))
        return
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()}, torch {torch.__version__}, {os.cpu_count()} CPUs, 1 thread a process")
    if args.only != "activations":
        print("\n| model | params | strategy | per-rank params + grads + AdamW state (MB, rank 0 / rank 1) | ratio to DDP | "
              "peak RSS growth per rank (MB) |\n|---|---|---|---|---|---|")
        rows = sharding_table(args.models)
        for row in rows:
            totals = [r["parameters"] + r["gradients"] + r["optimizer"] for r in row["ranks"]]
            ddp = next(o for o in rows if o["model"] == row["model"] and o["strategy"] == "ddp")
            ddp_total = max(r["parameters"] + r["gradients"] + r["optimizer"] for r in ddp["ranks"])
            print(f"| {row['model']} | {row['ranks'][0]['n_params'] / 1e6:.1f}M | {row['strategy']} | "
                  f"{' / '.join(_mb(t) for t in totals)} | {max(totals) / ddp_total:.3f} | "
                  f"{' / '.join(_mb(r['rss_growth']) for r in row['ranks'])} |")
        print(f"load average after part 1: {os.getloadavg()}")
    if args.only != "sharding":
        off, on = activation_peak(False), activation_peak(True)
        times = step_times()
        print("\n6-layer GPT (d_model 256, 4 heads, d_ff 1024), batch 8 x 128 tokens, one forward + backward:")
        print("| activation checkpointing | peak live bytes (MB) | of which gradients | activation peak (MB) | step (s) |")
        print("|---|---|---|---|---|")
        for label, result, seconds in (("off", off, times[False]), ("on", on, times[True])):
            print(f"| {label} | {_mb(result['peak'])} | {_mb(result['gradients'])} | {_mb(result['activations'])} | {seconds:.3f} |")
        print(f"activation peak with checkpointing: {on['activations'] / off['activations']:.3f}x "
              f"({1 - on['activations'] / off['activations']:.1%} lower); step time {times[True] / times[False]:.3f}x")
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
