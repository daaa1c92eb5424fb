"""Shared by the peer benchmarks: the machine header, same-size models, device peaks, verdicts.

The scripts that compare Treadmill with the libraries users would pick instead (PyTorch
Lightning, Hugging Face transformers) import this module; it is not a benchmark itself. The peers
are optional: install them with `pip install -e .[bench]`.

The "BART-sized" pair: a TransformerSeq2Seq configured the way BART is built (post-norm, GELU,
learned positions, one embedding shared by encoder, decoder and output projection, dropout on
residuals, attention weights and FFN activations) and a BartForConditionalGeneration from a
BartConfig of the same sizes, both random-init. The only parameter difference left is BART's
LayerNorm after the embeddings (2 x 2 x d_model), which TransformerSeq2Seq has no option for.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import torch
from torch import nn

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.models import TransformerSeq2Seq, transformer_seq2seq

# fp32 matmul peak of one core of the project's 2-core AMD EPYC (AVX-512 FMA); scaled by threads.
CPU_PEAK_PER_THREAD = 70e9

# Dense (no sparsity) peaks in FLOP/s from NVIDIA's data sheets. fp32 is the non-tensor-core
# rate: PyTorch leaves TF32 off for matmuls by default. Longest key first: "H100 PCIe" before "H100".
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756e12, "fp32": 51.2e12},
    "H100 NVL": {"bf16": 835e12, "fp32": 60e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},  # SXM
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
}


def version_of(package: str) -> str:
    """The installed version of `package`, or 'not installed'."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_machine() -> None:
    """Print the machine, thread count and library versions: the context every table needs."""
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch threads "
        f"{torch.get_num_threads()}"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    print(
        f"versions: torch {torch.__version__}, treadmill {version_of('treadmill')}, "
        f"transformers {version_of('transformers')}, lightning {version_of('lightning')}"
    )


def cpu_peak_flops() -> float:
    """fp32 matmul peak of the CPU threads torch uses."""
    return CPU_PEAK_PER_THREAD * torch.get_num_threads()


def gpu_peak_flops(dtype: str) -> float | None:
    """Peak FLOP/s of the current CUDA device for 'bf16' or 'fp32', None if not in GPU_PEAKS."""
    name = torch.cuda.get_device_name()
    for key, peaks in GPU_PEAKS.items():
        if key in name:
            return peaks[dtype]
    return None


@dataclass(frozen=True)
class Sizes:
    """The sizes both models of a BART-sized pair share."""

    vocab: int = 1000
    d_model: int = 256
    heads: int = 4
    layers: int = 3  # encoder layers = decoder layers
    d_ff: int = 1024
    dropout: float = 0.1
    max_positions: int = 64  # longest source or target (BOS included)


def build_ours(sizes: Sizes, **overrides: Any) -> TransformerSeq2Seq:
    """TransformerSeq2Seq built the way BART is (post-norm, GELU, learned positions, shared embeddings)."""
    options: dict[str, Any] = dict(
        d_model=sizes.d_model,
        n_heads=sizes.heads,
        n_encoder_layers=sizes.layers,
        n_decoder_layers=sizes.layers,
        d_ff=sizes.d_ff,
        dropout=sizes.dropout,
        norm_first=False,
        positional="learned",
        share_vocab=True,
        tie_embeddings=True,
        max_len=sizes.max_positions + 2,  # BART's position table has 2 extra rows (an offset)
        activation="gelu",
        attention_dropout=sizes.dropout,
        activation_dropout=sizes.dropout,
    )
    options.update(overrides)
    return transformer_seq2seq(sizes.vocab, sizes.vocab, **options)


def build_bart(sizes: Sizes, **overrides: Any) -> nn.Module:
    """BartForConditionalGeneration of `sizes`, random-init, using Treadmill's special token ids."""
    from transformers import BartConfig, BartForConditionalGeneration

    options: dict[str, Any] = dict(
        vocab_size=sizes.vocab,
        d_model=sizes.d_model,
        encoder_layers=sizes.layers,
        decoder_layers=sizes.layers,
        encoder_attention_heads=sizes.heads,
        decoder_attention_heads=sizes.heads,
        encoder_ffn_dim=sizes.d_ff,
        decoder_ffn_dim=sizes.d_ff,
        dropout=sizes.dropout,
        attention_dropout=sizes.dropout,
        activation_dropout=sizes.dropout,
        activation_function="gelu",
        max_position_embeddings=sizes.max_positions,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        # Same ids as Treadmill's tokenizers, so both models read the very same batches.
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        # BartConfig forces EOS at the last position by default; that would change output lengths.
        forced_eos_token_id=None,
        forced_bos_token_id=None,
        tie_word_embeddings=True,
    )
    options.update(overrides)
    return BartForConditionalGeneration(BartConfig(**options))


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def interleave(
    contenders: dict[str, Callable[[], tuple[float, float]]], rounds: int
) -> dict[str, list[float]]:
    """Run each contender once per round, ABAB then BABA, ...; returns work/second per run.

    A contender returns (work done, seconds). Alternating the order each round cancels slow
    drifts (thermal, other jobs) that a fixed order would charge to whoever runs second.
    """
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            work, seconds = contenders[name]()
            rates[name].append(work / seconds)
    return rates


def timed(fn: Callable[[], Any], sync: bool = False) -> tuple[Any, float]:
    """(fn(), seconds); with `sync`, CUDA work is waited for before and after."""
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if sync:
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def median(values: list[float]) -> float:
    """statistics.median, named here so the scripts read alike."""
    return statistics.median(values)


def verdict(label: str, value: float, target: float, higher_is_better: bool) -> bool:
    """Print whether `value` meets `target` and return it."""
    met = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    print(f"target {label} {sign} {target:g}: {value:.3f} -> {'met' if met else 'NOT met'}")
    return met
