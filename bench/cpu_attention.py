"""CPU attention in bf16: MultiHeadAttention's written-out softmax vs PyTorch's fused SDPA kernel.

On CPU, for bf16 inputs with at most CPU_BF16_EXPLICIT_MAX_KEYS keys,
MultiHeadAttention computes the softmax itself instead of calling the fused kernel. This
benchmark measures that choice against the fused kernel (forced by setting the threshold to 0),
interleaved (A, B, A, B, ...) in one process on the same inputs:

1. one attention layer, forward + backward, ~2,400 tokens per batch at lengths 8 to 512, padded
   self-attention and causal self-attention, in bf16 and (as a control: both take SDPA there)
   fp32. (fp16 also keeps SDPA: forcing the explicit softmax there was 0.57-0.97x, slower at every
   length, and an fp16 layer ran ~20x slower than a bf16 one on this CPU anyway);
2. a full training step (bf16 autocast, AdamW) of the G2P recipe's model, TransformerSeq2Seq with
   d_model 192, 4 heads, 3+3 layers, on batches shaped like G2P's (300 words of 6-10 symbols).

A ratio > 1 means the dispatch is faster than always using the fused kernel.

    OMP_NUM_THREADS=2 .venv/bin/python bench/cpu_attention.py          # ~2 minutes on 2 CPU cores
    OMP_NUM_THREADS=2 .venv/bin/python bench/cpu_attention.py --quick  # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import treadmill.nn.attention as attention
from treadmill.constants import BOS_ID, PAD_ID
from treadmill.models import transformer_seq2seq
from treadmill.nn import MultiHeadAttention

THRESHOLD = attention.CPU_BF16_EXPLICIT_MAX_KEYS


def _timed(step: Callable[[], None], fused: bool, repeats: int) -> float:
    """Seconds per call of ``step`` with the fused kernel forced (or the default dispatch)."""
    attention.CPU_BF16_EXPLICIT_MAX_KEYS = 0 if fused else THRESHOLD
    try:
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        return (time.perf_counter() - start) / repeats
    finally:
        attention.CPU_BF16_EXPLICIT_MAX_KEYS = THRESHOLD


def _ratio(step: Callable[[], None], rounds: int, repeats: int) -> tuple[float, float, float]:
    """(fused ms, dispatch ms, median of per-round fused/dispatch ratios), interleaved rounds."""
    for fused in (True, False):  # warm-up
        _timed(step, fused, 2)
    fused_times, ours_times = [], []
    for _ in range(rounds):
        fused_times.append(_timed(step, True, repeats))
        ours_times.append(_timed(step, False, repeats))
    ratios = [f / o for f, o in zip(fused_times, ours_times, strict=True)]
    return (
        statistics.median(fused_times) * 1e3,
        statistics.median(ours_times) * 1e3,
        statistics.median(ratios),
    )


def attention_layer(
    dtype: torch.dtype, batch: int, length: int, causal: bool
) -> Callable[[], None]:
    """Forward + backward of one self-attention layer (d_model 192, 4 heads) on padded input."""
    layer = MultiHeadAttention(192, 4).to(dtype)
    x = torch.randn(batch, length, 192, dtype=dtype, requires_grad=True)
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[: batch // 2, -max(1, length // 4) :] = True  # half the rows end in padding

    def step() -> None:
        out = layer(x, key_padding_mask=None if causal else padding, is_causal=causal).output
        out.float().sum().backward()

    return step


def g2p_training_step() -> Callable[[], None]:
    """One bf16-autocast training step of the G2P recipe's model on a G2P-shaped batch."""
    torch.manual_seed(0)
    model = transformer_seq2seq(
        src_vocab_size=32,
        tgt_vocab_size=75,
        d_model=192,
        n_heads=4,
        n_encoder_layers=3,
        n_decoder_layers=3,
        d_ff=768,
        dropout=0.1,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    lengths = torch.randint(6, 11, (300,))
    src = torch.randint(4, 32, (300, 10))
    tgt = torch.randint(4, 75, (300, 11))
    tgt[:, 0] = BOS_ID
    for row, n in enumerate(lengths.tolist()):
        src[row, n:] = PAD_ID
        tgt[row, n + 1 :] = PAD_ID

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(src, tgt[:, :-1], src_padding_mask=src == PAD_ID)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD_ID
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    """Print fused-kernel vs dispatch timings and their ratio for each case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few shapes and rounds: a smoke run")
    args = parser.parse_args()
    rounds, repeats = (2, 2) if args.quick else (5, 10)
    lengths = (8, 64) if args.quick else (8, 32, 128, 256, 512)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; explicit up to {THRESHOLD} keys"
    )
    print(f"{'case':44s} {'fused ms':>9s} {'ours ms':>8s} {'speed-up':>9s}")
    for dtype in (torch.bfloat16, torch.float32):
        for length in lengths:
            for causal in (False, True):
                step = attention_layer(dtype, max(1, 2400 // length), length, causal)
                fused, ours, ratio = _ratio(step, rounds, repeats)
                name = f"{str(dtype)[6:]} attention, length {length}, {'causal' if causal else 'padded'}"
                print(f"{name:44s} {fused:9.2f} {ours:8.2f} {ratio:8.2f}x", flush=True)
    fused, ours, ratio = _ratio(g2p_training_step(), rounds, 3 if args.quick else 10)
    print(f"{'G2P model training step (bf16 autocast)':44s} {fused:9.2f} {ours:8.2f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
