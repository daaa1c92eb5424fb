"""Training throughput: TransformerSeq2Seq vs the same model built on torch.nn.Transformer.

Both models share the embedding, positional-encoding and (tied) output-projection code and every
size: d_model, heads, layers, d_ff, dropout (residual, attention weights, FFN activation, like
torch), pre-norm vs pre-norm with final LayerNorms (or post-norm vs post-norm with --post-norm).
Only the Transformer stack differs. Runs are interleaved (A, B, A, B, ...) in one process on the
same batches, so machine noise hits both alike. Throughput counts non-pad target tokens per second
of a full training step (forward, loss, backward, AdamW step).

    .venv/bin/python bench/model_throughput.py            # ~1-2 minutes on 2 CPU cores
    .venv/bin/python bench/model_throughput.py --quick    # a smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from treadmill.constants import BOS_ID, PAD_ID
from treadmill.models import transformer_seq2seq
from treadmill.nn import SinusoidalPositionalEncoding, padding_mask


class TorchTransformerSeq2Seq(nn.Module):
    """The reference: our embeddings and output projection around torch.nn.Transformer."""

    def __init__(
        self,
        vocab: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_ff: int,
        dropout: float,
        norm_first: bool,
    ) -> None:
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.src_embedding = nn.Embedding(vocab, d_model, padding_idx=PAD_ID)
        self.tgt_embedding = nn.Embedding(vocab, d_model, padding_idx=PAD_ID)
        self.src_positions = SinusoidalPositionalEncoding(d_model, 1024)
        self.tgt_positions = SinusoidalPositionalEncoding(d_model, 1024)
        self.dropout = nn.Dropout(dropout)
        layer_args = dict(dropout=dropout, batch_first=True, norm_first=norm_first)
        # nn.Transformer always adds final norms; post-norm stacks get none, as ours.
        encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, n_heads, d_ff, **layer_args),
            n_layers,
            norm=nn.LayerNorm(d_model) if norm_first else None,
            enable_nested_tensor=False,
        )
        decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, n_heads, d_ff, **layer_args),
            n_layers,
            norm=nn.LayerNorm(d_model) if norm_first else None,
        )
        self.transformer = nn.Transformer(
            d_model, n_heads, custom_encoder=encoder, custom_decoder=decoder, batch_first=True
        )
        self.output_proj = nn.Linear(d_model, vocab, bias=False)
        self.output_proj.weight = self.tgt_embedding.weight

    def _embed(self, tokens: Tensor, embedding: nn.Module, pos: nn.Module) -> Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.dropout(embedding(tokens) * self.scale + pos(positions))

    def forward(self, src: Tensor, tgt_in: Tensor, src_padding_mask: Tensor) -> Tensor:
        """Logits (batch, tgt_len, vocab)."""
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], device=src.device)
        hidden = self.transformer(
            self._embed(src, self.src_embedding, self.src_positions),
            self._embed(tgt_in, self.tgt_embedding, self.tgt_positions),
            tgt_mask=causal,
            src_key_padding_mask=src_padding_mask,
            memory_key_padding_mask=src_padding_mask,
            tgt_is_causal=True,
        )
        return self.output_proj(hidden)


def make_batches(n: int, batch: int, vocab: int, mean_len: int, gen: torch.Generator) -> list:
    """Right-padded (src, tgt_in, tgt_out, src_padding_mask) batches with lengths mean_len +- 1/3."""
    batches = []
    for _ in range(n):
        low, high = max(2, mean_len * 2 // 3), mean_len * 4 // 3
        src_len = torch.randint(low, high + 1, (batch,), generator=gen)
        tgt_len = torch.randint(low, high + 1, (batch,), generator=gen)
        src_mask = padding_mask(src_len)
        src = torch.randint(4, vocab, src_mask.shape, generator=gen).masked_fill(src_mask, PAD_ID)
        tgt_mask = padding_mask(tgt_len + 1)
        tgt = torch.randint(4, vocab, tgt_mask.shape, generator=gen).masked_fill(tgt_mask, PAD_ID)
        tgt[:, 0] = BOS_ID
        batches.append((src, tgt[:, :-1], tgt[:, 1:], src_mask))
    return batches


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, batches: list) -> tuple[int, float]:
    """Run one training step per batch; returns (target tokens, seconds)."""
    tokens, start = 0, time.perf_counter()
    for src, tgt_in, tgt_out, src_mask in batches:
        logits = model(src, tgt_in, src_mask)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tokens += int(tgt_out.ne(PAD_ID).sum())
    return tokens, time.perf_counter() - start


def main() -> None:
    """Parse arguments, build both models, run interleaved rounds, print tokens/s and the ratio."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny run to check that it works")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=2, help="training steps per model per round")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=30, help="mean source/target length")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--post-norm", action="store_true", help="compare post-norm stacks")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    norm_first = not args.post_norm
    ours = transformer_seq2seq(
        args.vocab,
        args.vocab,
        d_model=args.d_model,
        n_heads=args.heads,
        n_encoder_layers=args.layers,
        n_decoder_layers=args.layers,
        d_ff=args.d_ff,
        dropout=args.dropout,
        norm_first=norm_first,
        attention_dropout=args.dropout,
        activation_dropout=args.dropout,
    )
    ref = TorchTransformerSeq2Seq(
        args.vocab, args.d_model, args.heads, args.layers, args.d_ff, args.dropout, norm_first
    )
    n_ours = sum(t.numel() for t in ours.parameters())
    n_ref = sum(t.numel() for t in ref.parameters())
    assert n_ours == n_ref, f"parameter counts differ: ours {n_ours}, torch {n_ref}"
    models = {"treadmill": ours, "torch.nn.Transformer": ref}
    # fused AdamW: one kernel for all parameters, so the step measures the models, not the optimizer
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for k, m in models.items()}
    batches = make_batches(
        args.steps, args.batch, args.vocab, args.length, torch.Generator().manual_seed(0)
    )
    for name, model in models.items():  # warm-up: allocator, kernels, optimizer state
        model.train()
        train_steps(model, opts[name], batches[:1])
    rates: dict[str, list[float]] = {k: [] for k in models}
    totals = {k: [0, 0.0] for k in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            tokens, seconds = train_steps(model, opts[name], batches)
            rates[name].append(tokens / seconds)
            totals[name][0] += tokens
            totals[name][1] += seconds
    print(
        f"threads={args.threads} batch={args.batch} len~{args.length} vocab={args.vocab} "
        f"d_model={args.d_model} heads={args.heads} layers={args.layers}+{args.layers} "
        f"d_ff={args.d_ff} {'post' if args.post_norm else 'pre'}-norm params={n_ours:,}"
    )
    for name in models:
        print(
            f"{name:>22}: {totals[name][0] / totals[name][1]:9.0f} tgt tokens/s "
            f"(median round {statistics.median(rates[name]):.0f})"
        )
    ratio = (totals["treadmill"][0] / totals["treadmill"][1]) / (
        totals["torch.nn.Transformer"][0] / totals["torch.nn.Transformer"][1]
    )
    print(f"ratio (ours / torch): {ratio:.3f}x")


if __name__ == "__main__":
    main()
