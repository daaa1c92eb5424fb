"""Decoding speed: tokens/s of generate() with the KV cache vs without, on a TransformerSeq2Seq.

The model is a random-init TransformerSeq2Seq (d_model 256, 4 heads, 3+3 layers, d_ff 1024).
Every output is forced to the same length with min_len = max_len (EOS cannot stop early), so both
modes do the same number of steps and produce the same tokens (checked: column `same`). Tokens/s
counts output tokens of the returned sequences: batch x length / seconds (beam search does
beam_size times more model work for the same count). Without the cache every step re-runs the
decoder over the whole prefix, so its cost grows with the square of the length.

    .venv/bin/python bench/decode_speed.py            # lengths 32 and 128, a few minutes on 2 cores
    .venv/bin/python bench/decode_speed.py --quick    # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from treadmill.constants import PAD_ID
from treadmill.decoding import generate
from treadmill.models import TransformerSeq2Seq, transformer_seq2seq


def build_model(vocab: int) -> TransformerSeq2Seq:
    """The benchmarked model: d_model 256, 3+3 layers, eval mode."""
    torch.manual_seed(0)
    model = transformer_seq2seq(
        vocab, vocab, d_model=256, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024
    )
    return model.eval()


def make_batch(batch: int, vocab: int, src_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded sources with lengths in [src_len/2, src_len]."""
    gen = torch.Generator().manual_seed(batch)
    lengths = torch.randint(max(1, src_len // 2), src_len + 1, (batch,), generator=gen)
    src = torch.randint(4, vocab, (batch, int(lengths.max())), generator=gen)
    mask = torch.arange(src.size(1))[None, :] >= lengths[:, None]
    return src.masked_fill(mask, PAD_ID), mask


def time_generate(model, src, mask, reps: int, **options) -> tuple[float, list]:
    """Best-of-`reps` wall time of one generate() call, and its sequences."""
    best, sequences = float("inf"), []
    for _ in range(reps):
        start = time.perf_counter()
        sequences = generate(model, src, mask, **options).sequences
        best = min(best, time.perf_counter() - start)
    return best, sequences


def run(args: argparse.Namespace) -> list[dict]:
    """Measure every (strategy, batch, length) cell with and without the cache."""
    model = build_model(args.vocab)
    strategies = [
        ("greedy", {"strategy": "greedy"}),
        ("beam5", {"strategy": "beam", "beam_size": 5}),
    ]
    src, mask = make_batch(2, args.vocab, args.src_len)
    generate(model, src, mask, max_len=4)  # warm-up: first-call allocations and kernel choice
    rows = []
    for name, options in strategies:
        for batch in args.batches:
            src, mask = make_batch(batch, args.vocab, args.src_len)
            for length in args.lengths:
                forced = dict(options, min_len=length, max_len=length)
                cached_s, cached = time_generate(model, src, mask, args.reps, **forced)
                plain_s, plain = time_generate(
                    model, src, mask, args.reps, use_cache=False, **forced
                )
                tokens = sum(len(s) for s in cached)
                row = {
                    "strategy": name,
                    "batch": batch,
                    "length": length,
                    "cached_tok_s": tokens / cached_s,
                    "uncached_tok_s": tokens / plain_s,
                    "speedup": plain_s / cached_s,
                    "same": cached == plain,
                }
                rows.append(row)
                print_row(row)
    return rows


def print_row(row: dict) -> None:
    """One Markdown table row."""
    print(
        f"| {row['strategy']:<8} | {row['batch']:>5} | {row['length']:>6} | "
        f"{row['cached_tok_s']:>10.0f} | {row['uncached_tok_s']:>12.0f} | "
        f"{row['speedup']:>6.2f}x | {'yes' if row['same'] else 'NO':<4} |",
        flush=True,
    )


def main() -> None:
    """Parse options, print the machine and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny lengths/batches: a smoke run")
    parser.add_argument("--vocab", type=int, default=1000, help="source and target vocabulary")
    parser.add_argument("--src-len", type=int, default=32, help="longest source length")
    parser.add_argument("--reps", type=int, default=1, help="best of this many runs per cell")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    args.lengths = [8, 16] if args.quick else [32, 128]
    args.batches = [1, 4] if args.quick else [1, 32]
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, vocab {args.vocab}, "
        f"src_len <= {args.src_len}, best of {args.reps}"
    )
    print("| strategy | batch | length | cached tok/s | uncached tok/s | speedup | same |")
    print("|----------|------:|-------:|-------------:|---------------:|--------:|------|")
    rows = run(args)
    if not all(row["same"] for row in rows):
        raise SystemExit("cached and uncached decoding produced different tokens")


if __name__ == "__main__":
    main()
