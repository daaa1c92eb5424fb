"""Training throughput: TransformerSeq2Seq vs Hugging Face BART of the same size, in target tokens/s.

Both models are random-init and BART-shaped (bench/peers.py): d_model 256, 4 heads, 3 encoder +
3 decoder layers, FFN 1024, GELU, post-norm, learned positions, one shared and tied embedding,
vocabulary 1000, dropout 0.1 on residuals, attention weights and FFN activations; the parameter
counts are printed (they differ only by BART's two embedding LayerNorms). Each training step is
the same for both: forward over a batch of 64 sources x 32 tokens and 64 targets x 32 tokens
(padding masks passed, as a collator gives them), cross-entropy over the target tokens (BART
computes it itself from `labels`, the way its users train; ours with F.cross_entropy: the same
loss), backward, fused AdamW step. After warm-up steps, timed blocks of steps alternate between
the two models (A B, B A, ...) on the same batches; the table gives the median tokens/s over blocks
and the ratio ours / HF (target >= 1.15).

Peak memory is measured per side in a fresh child process each (`--memory-of NAME`, run by the
parent before the timing): resident set growth from just before the model is built to the peak
over warm-up + one block of training steps (`getrusage` max RSS), so neither side's allocations
linger in the other's figure. Target: ours <= HF's.

Achieved FLOP/s uses the standard training estimate (3 x forward: forward + backward):

    FLOPs/step = 6 * (N_enc * B*S + (N_dec + d_model*V) * B*T)
               + 12 * d_model * B * n_layers * (S^2 + T^2 + T*S)

with N_enc, N_dec the non-embedding parameters of one encoder / decoder stack, d_model*V the
output projection (a real matmul though its weight is the tied embedding), B the batch, S and T
the source and target lengths. The attention term is QK^T and AV (2 * 2 * L_q * L_k * d_model per
layer and sequence forward, times 3) for encoder self (S^2), decoder self (T^2, counted in full
as the kernels compute it) and cross-attention (T*S). On CPU the share is taken of an fp32 matmul
peak of 70 GFLOP/s per thread (this project's 2-core AMD EPYC), times torch.get_num_threads(). With
CUDA, the GPU is measured too, in fp32 and bf16 autocast, against the device's data-sheet peak
(H100/H200/A100; other GPUs get no MFU).

    .venv/bin/python bench/seq2seq_throughput.py --threads 1   # ~3 minutes on 1 core
    .venv/bin/python bench/seq2seq_throughput.py               # all cores (2 here)
    .venv/bin/python bench/seq2seq_throughput.py --quick       # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F
from peers import (
    Sizes,
    build_bart,
    build_ours,
    count_parameters,
    cpu_peak_flops,
    gpu_peak_flops,
    interleave,
    median,
    print_machine,
    timed,
    verdict,
)
from torch import Tensor, nn

from treadmill.constants import BOS_ID, PAD_ID

Batch = tuple[Tensor, Tensor, Tensor, Tensor]  # src, tgt_in, tgt_out, src_padding_mask


def make_batches(
    n: int, batch: int, src_len: int, tgt_len: int, vocab: int, device: str
) -> list[Batch]:
    """`n` full-length random batches on `device`; the padding mask is all False (no padding)."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n):
        src = torch.randint(4, vocab, (batch, src_len), generator=gen)
        tgt = torch.randint(4, vocab, (batch, tgt_len + 1), generator=gen)
        tgt[:, 0] = BOS_ID
        mask = src.eq(PAD_ID)
        batches.append(tuple(t.to(device) for t in (src, tgt[:, :-1], tgt[:, 1:], mask)))
    return batches


def ours_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Treadmill: logits from forward(src, tgt_in, src_padding_mask), token cross-entropy."""
    src, tgt_in, tgt_out, mask = batch
    logits = model(src, tgt_in, mask)
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)


def hf_loss(model: nn.Module, batch: Batch) -> Tensor:
    """BART: the loss it computes from `labels` (pads -> -100), attention_mask True at real tokens."""
    src, tgt_in, tgt_out, mask = batch
    labels = tgt_out.masked_fill(tgt_out.eq(PAD_ID), -100)
    return model(
        input_ids=src, attention_mask=(~mask).long(), decoder_input_ids=tgt_in, labels=labels
    ).loss


def training_flops(model: nn.Module, sizes: Sizes, batch: int, src_len: int, tgt_len: int) -> float:
    """FLOPs of one training step by the formula of the module docstring (from our model's stacks)."""
    n_enc = count_parameters(model.encoder)
    n_dec = count_parameters(model.decoder)
    d, layers = sizes.d_model, sizes.layers
    dense = 6 * (n_enc * batch * src_len + (n_dec + d * sizes.vocab) * batch * tgt_len)
    attention = 12 * d * batch * layers * (src_len**2 + tgt_len**2 + tgt_len * src_len)
    return float(dense + attention)


def current_rss_bytes() -> int:
    """This process's resident set now (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(args: argparse.Namespace, name: str) -> None:
    """In a fresh process: peak RSS growth (bytes) of building `name` and training warm-up + one block."""
    sizes = Sizes(vocab=args.vocab)
    batches = make_batches(args.steps, args.batch, args.src_len, args.tgt_len, args.vocab, "cpu")
    before = current_rss_bytes()
    torch.manual_seed(0)
    model = (build_ours(sizes) if name == "treadmill" else build_bart(sizes)).train()
    loss_fn = ours_loss if name == "treadmill" else hf_loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    for batch in batches[:1] * args.warmup + batches:
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"peak_rss_growth": max(0, peak - before)}))


def measure_memory(args: argparse.Namespace) -> dict[str, float]:
    """Peak RSS growth in MiB of each side, each in its own child process (see memory_child)."""
    growth = {}
    for name in ("treadmill", "hf-bart"):
        command = [sys.executable, __file__, "--memory-of", name, "--threads", str(args.threads)]
        command += ["--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        command += ["--src-len", str(args.src_len), "--tgt-len", str(args.tgt_len)]
        command += ["--vocab", str(args.vocab)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        growth[name] = json.loads(out.strip().splitlines()[-1])["peak_rss_growth"] / 2**20
    return growth


def run_device(args: argparse.Namespace, device: str, dtype: str) -> list[dict]:
    """Interleaved timed blocks of both models on one device/dtype; rows [treadmill, hf-bart]."""
    sizes = Sizes(vocab=args.vocab)
    torch.manual_seed(0)
    ours = build_ours(sizes).to(device).train()
    torch.manual_seed(0)
    hf = build_bart(sizes).to(device).train()
    contenders = {"treadmill": (ours, ours_loss), "hf-bart": (hf, hf_loss)}
    # fused AdamW: one kernel over all parameters for both, so the step compares the models
    opts = {
        k: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
        for k, (m, _) in contenders.items()
    }
    batches = make_batches(args.steps, args.batch, args.src_len, args.tgt_len, args.vocab, device)
    tokens_per_block = sum(int(b[2].ne(PAD_ID).sum()) for b in batches)
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if dtype == "bf16"
        else contextlib.nullcontext()
    )
    sync = device == "cuda"

    def block(name: str, steps: list[Batch]) -> None:
        model, loss_fn = contenders[name]
        for batch in steps:
            with autocast:
                loss = loss_fn(model, batch)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()

    for name in contenders:  # warm-up: allocator, kernel selection, optimizer state
        timed(lambda n=name: block(n, batches[:1] * args.warmup), sync)

    def runner(name: str):
        return lambda: (tokens_per_block, timed(lambda: block(name, batches), sync)[1])

    rates = interleave({name: runner(name) for name in contenders}, args.rounds)
    flops_per_token = training_flops(ours, sizes, args.batch, args.src_len, args.tgt_len) / (
        args.batch * args.tgt_len
    )
    peak = cpu_peak_flops() if device == "cpu" else gpu_peak_flops(dtype)
    rows = []
    for name, (model, _) in contenders.items():
        tok_s = median(rates[name])
        rows.append(
            {
                "device": device,
                "dtype": dtype,
                "model": name,
                "params": count_parameters(model),
                "tok_s": tok_s,
                "flop_s": tok_s * flops_per_token,
                "mfu": None if peak is None else tok_s * flops_per_token / peak,
                "peak": peak,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    """The Markdown table of every (device, dtype, model) row."""
    print(
        "| device | dtype | model | params | tgt tokens/s (median) | achieved GFLOP/s | share of peak |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}% of {r['peak'] / 1e9:,.0f}"
        print(
            f"| {r['device']} | {r['dtype']} | {r['model']} | {r['params']:,} | {r['tok_s']:,.0f} | "
            f"{r['flop_s'] / 1e9:,.1f} | {mfu} |"
        )


def main() -> None:
    """Parse options, measure CPU (and GPU when present), print the table and the verdicts."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small batch, few blocks: a smoke run")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=8, help="timed blocks per model")
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--src-len", type=int, default=32)
    parser.add_argument("--tgt-len", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--no-gpu", action="store_true", help="CPU only even when CUDA is present")
    parser.add_argument("--memory-of", choices=["treadmill", "hf-bart"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch = 2, 1, 1, 16
    torch.set_num_threads(args.threads)
    if args.memory_of:
        memory_child(args, args.memory_of)
        return
    memory = measure_memory(args)
    print_machine()
    print(
        f"batch {args.batch} x src {args.src_len} / tgt {args.tgt_len} tokens, vocab {args.vocab}, "
        f"{args.rounds} interleaved blocks of {args.steps} steps per model after {args.warmup} "
        f"warm-up steps; CPU peak used: {cpu_peak_flops() / 1e9:.0f} GFLOP/s "
        f"(70 per thread x {torch.get_num_threads()})"
    )
    runs = [("cpu", "fp32")]
    if torch.cuda.is_available() and not args.no_gpu:
        runs += [("cuda", "fp32"), ("cuda", "bf16")]
    results = {(device, dtype): run_device(args, device, dtype) for device, dtype in runs}
    print_table([row for rows in results.values() for row in rows])
    print(
        f"peak resident memory growth (CPU, own process each, warm-up + {args.steps} steps): "
        f"treadmill {memory['treadmill']:,.1f} MiB, hf-bart {memory['hf-bart']:,.1f} MiB"
    )
    for (device, dtype), (ours, hf) in results.items():
        verdict(f"{device}/{dtype} tokens/s ours/HF", ours["tok_s"] / hf["tok_s"], 1.15, True)
        if ours["mfu"] is not None:
            verdict(f"{device}/{dtype} ours share of matmul peak", ours["mfu"], 0.75, True)
    verdict("CPU peak memory ours/HF", memory["treadmill"] / memory["hf-bart"], 1.0, False)


if __name__ == "__main__":
    main()
